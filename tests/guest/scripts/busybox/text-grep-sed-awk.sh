# busybox text tools: grep, sed and awk over files and pipes.
set -u
mkdir -p /tmp/t && cd /tmp/t
cat > fruit <<'EOF2'
banana 3
apple 10
cherry 7
apple 2
date 5
banana 1
elderberry 12
fig 4
EOF2
echo '== grep'
grep -n an fruit
grep -c apple fruit
grep -v -e a -e e fruit
grep -E '^(fig|date) ' fruit
echo '== sed'
sed -n -e 's/a/A/g' -e '2,4p' fruit
sed -i 's/^apple/APPLE/' fruit
grep -i apple fruit
echo '== awk'
awk '{ s[$1] += $2 } END { for (k in s) print k, s[k] }' fruit | sort
awk 'NR % 2 == 0 { printf "%s-%d\n", $1, NR }' fruit
