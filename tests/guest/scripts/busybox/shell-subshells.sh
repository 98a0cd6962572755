# busybox sh: subshells and command substitution.
# Run as `/bin/sh /test.sh` natively (chroot) and in the sandbox; outputs must match.
set -u
mkdir -p /tmp/sh && cd /tmp/sh

echo '== subshells'
x=outer; (x=inner; echo "in: $x"); echo "out: $x"
(cd /bin && pwd); pwd
v=$(echo sub | tr a-z A-Z); echo "$v"
(exit 3); echo "status $?"
n=$( (echo a; echo b) | wc -l ); echo "lines $n"
