# busybox ps, /proc/self/status, mount, df and other /proc views.
# pids, memory sizes in /proc, times and disk figures differ between runs (named and masked by the test).
set -u
echo '== ps'
sleep 3 &
# ps must see `sleep 3`, not the shell child before its exec.
until tr '\0' ' ' < /proc/$!/cmdline | grep -q '^sleep 3'; do :; done
ps
kill $!
echo '== status'
cat /proc/self/status
echo '== mount'
mount
echo '== df'
df
echo '== /proc/self'
tr '\0' ' ' < /proc/self/cmdline; echo
for l in exe cwd root; do readlink /proc/self/$l; done
cd /tmp && readlink /proc/self/cwd
ls /proc/self/fd
cat /proc/sys/kernel/ostype
wc -l < /proc/self/limits
grep -c . /proc/self/maps >/dev/null && echo maps readable
