# bash: command substitution (nested, through pipes to coreutils), regex matches, PIPESTATUS.
# Run as `/bin/bash /test.sh` natively (chroot) and in the sandbox; outputs must match.
set -euo pipefail
cd /tmp

echo '== command substitution'
n=$(printf 'a\nb\nc\n' | wc -l)
echo "lines: $n"
upper=$(echo "mixed Case" | tr '[:lower:]' '[:upper:]')
echo "$upper"
nested=$(echo "outer $(echo "inner $(echo deepest)")")
echo "$nested"
if [[ "v1.22.3" =~ ^v([0-9]+)\.([0-9]+) ]]; then echo "major ${BASH_REMATCH[1]} minor ${BASH_REMATCH[2]}"; fi
echo "pipestatus: $(false | true; echo "${PIPESTATUS[*]}")"
