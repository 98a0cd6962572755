# bash: arrays, associative arrays, read -a, mapfile with process substitution, functions.
# Run as `/bin/bash /test.sh` natively (chroot) and in the sandbox; outputs must match.
set -euo pipefail
cd /tmp

echo '== arrays'
fruits=(pear apple fig "passion fruit")
fruits+=(kiwi)
echo "count ${#fruits[@]} first ${fruits[0]} last ${fruits[-1]} slice ${fruits[*]:1:2}"
for i in "${!fruits[@]}"; do printf '%d=%s;' "$i" "${fruits[$i]}"; done; echo
declare -A colour=([apple]=red [fig]=purple [kiwi]=green)
for k in "${!colour[@]}"; do echo "$k is ${colour[$k]}"; done
read -r -a words <<< "one two  three"
echo "${#words[@]} words, second=${words[1]}"
mapfile -t lines < <(printf 'l1\nl2\nl3\n')
echo "mapfile ${#lines[@]}: ${lines[*]}"

echo '== functions'
fact() { local n=$1; if (( n <= 1 )); then echo 1; else echo $(( n * $(fact $((n - 1))) )); fi; }
echo "5! = $(fact 5)"
greet() { local who=${1:-nobody}; printf -v msg 'hello, %s' "$who"; echo "$msg"; return 3; }
greet world || echo "greet returned $?"
counter=0; bump() { counter=$((counter + 1)); }; bump; bump; echo "counter $counter"
