# busybox sh: pipes and here-documents.
# Run as `/bin/sh /test.sh` natively (chroot) and in the sandbox; outputs must match.
set -u
mkdir -p /tmp/sh && cd /tmp/sh

echo '== pipes'
printf 'pear\napple\nfig\n' | sort | head -n 2
echo one two three | { read a b c; echo "$c $b $a"; }
printf 'x\ny\n' | while read l; do echo "line $l"; done
false | true; echo "pipeline status $?"

echo '== here-docs'
name=world
cat <<EOF
hello $name $((6 * 7))
EOF
cat <<'EOF'
literal $name $((1 + 1))
EOF
	cat <<-EOF
	tab-stripped $name
	EOF
read -r h1 <<EOF
from-heredoc
EOF
echo "read $h1"
