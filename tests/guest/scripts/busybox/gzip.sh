# busybox gzip, gunzip, zcat and md5sum through pipes.
set -u
mkdir -p /tmp/z/t && cd /tmp/z
seq 1 2000 > t/numbers
echo hello > t/hello
echo '== gzip'
gzip -c t/numbers > numbers.gz
gzip -t numbers.gz && echo "gzip test ok"
gzip t/hello
ls t
gunzip t/hello.gz
cat t/hello
echo '== zcat'
zcat numbers.gz | md5sum
md5sum t/numbers
