# busybox sh: background jobs, wait, kill and traps.
# Run as `/bin/sh /test.sh` natively (chroot) and in the sandbox; outputs must match.
set -u
mkdir -p /tmp/sh && cd /tmp/sh

echo '== background jobs'
(echo bg1 > bg1.txt) & p1=$!
(echo bg2 > bg2.txt; exit 7) & p2=$!
wait $p1; echo "wait1 $?"
wait $p2; echo "wait2 $?"
cat bg1.txt bg2.txt
sleep 0.2 & sleep 0.1 & wait; echo "wait all $?"
trap 'echo trapped USR1' USR1
kill -USR1 $$; echo "after kill"
echo done
# The shell prints "Terminated" only when `wait` itself reaps the job (a race): silence it.
sleep 5 & k=$!; kill $k; wait $k 2>/dev/null; echo "killed: $?"
