# bash with coreutils in pipes: cat (here-string, -n, -A), ls, wc, head, tail.
# Run as `/bin/bash /test.sh` natively (chroot) and in the sandbox; outputs must match.
set -euo pipefail
cd /tmp
echo '== cat, ls | wc'
cat <<< "here-string through cat"
ls / | wc -l
echo '== head, tail, cat -n'
head -n 1 /etc/passwd | cat -n
printf 'x\ny\nz\n' | tail -n 2 | cat -A
