# bash with coreutils in pipes: sort, head, cut, uniq, tr, seq.
# Run as `/bin/bash /test.sh` natively (chroot) and in the sandbox; outputs must match.
set -euo pipefail
cd /tmp
fruits=(pear apple fig "passion fruit" kiwi)
echo '== sort | head'
printf '%s\n' "${fruits[@]}" | sort | head -n 3
echo '== seq | cut | sort | uniq | tr'
seq 1 20 | cut -c1 | sort -n | uniq -c | tr -s ' '
