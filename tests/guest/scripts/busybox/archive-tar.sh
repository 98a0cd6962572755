# busybox tar c/x and md5sum.
# tar tv and ls -l show modification times of files the script made (masked by the test).
set -u
mkdir -p /tmp/a/t/d && cd /tmp/a
seq 1 2000 > t/d/numbers
echo hello > t/hello
ln -s hello t/link
chmod 600 t/hello
echo '== md5sum'
md5sum t/d/numbers t/hello
echo '== tar c'
tar cf t.tar t
tar tvf t.tar | sort -k6
echo '== tar x'
mkdir out && cd out
tar xf ../t.tar
ls -l t
md5sum t/d/numbers t/hello
tar xf ../t.tar -O t/hello
