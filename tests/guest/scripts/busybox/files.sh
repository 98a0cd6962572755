# busybox: ls -la, cp -r, mv, rm -r, touch, chmod, ln -s, stat, find on the host-backed root.
# Times of files the script did not set, and inode numbers, differ between runs (masked by the test).
set -u
mkdir -p /tmp/f && cd /tmp/f
mkdir -p src/a/b
echo hello > src/a/b/file
echo top > src/top
ln -s a/b/file src/rel
ln -s /tmp/f/src/a src/abs
chmod 640 src/top
touch -d '2020-01-02 03:04:05' src/top src/a/b/file
echo '== ls -la'
stat -c '%n %Y %y' src/top src/a/b/file
ls -la src
echo '== cp -r, mv'
cp -r src dst
mv dst/top dst/top2
mv dst moved
ls -la moved moved/a/b
echo '== find'
find moved | sort
find moved -type l | sort
find moved -type f -name 'f*'
echo '== stat'
stat -c '%n %s %a %A %F %h %U %G' moved/top2 moved/a/b/file moved/a
stat -c '%N' moved/rel moved/abs
stat moved/a/b/file
echo '== chmod, ln -s, symlinks followed'
chmod 751 moved/top2; chmod u-w,g+x moved/a/b/file
ls -l moved/top2 moved/a/b/file
cat moved/rel moved/abs/b/file
ln -s moved/abs/b chain; cat chain/file; readlink chain
echo '== rm -r'
rm -r moved src
ls -la
