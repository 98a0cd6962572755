# busybox tar with gzip (tar czf, tar xzf) and md5sum -c.
set -u
mkdir -p /tmp/z/t/d && cd /tmp/z
seq 1 2000 > t/d/numbers
echo hello > t/hello
echo '== tar z'
tar czf t.tgz t
mkdir out && cd out && tar xzf ../t.tgz
find t | sort
echo '== md5sum -c'
md5sum t/d/numbers t/hello > ../sums
cd .. && md5sum -c sums
