# busybox text tools: sort, uniq, cut, wc, head, tail, seq over files and pipes.
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
echo '== sort, uniq'
cut -d' ' -f1 fruit | sort | uniq -c | sort -k1,1nr -k2
sort -k2,2n fruit | head -n 3
echo '== wc, head, tail'
wc fruit
wc -l < fruit
head -n 2 fruit
tail -n 2 fruit
tail -c 12 fruit
seq 1 500 | tail -n 1
