# A stand-in for the CIFAR-10 trainer (busybox sh): it reads TF_CONFIG as TensorFlow would,
# worker 0 waits for every other worker, the others reach worker 0 by its cluster address.
index=$(echo "$TF_CONFIG" | sed 's/.*"index": \([0-9]*\).*/\1/')
workers=$(echo "$TF_CONFIG" | grep -o ':2222' | wc -l)
chief=$(echo "$TF_CONFIG" | sed 's/.*"worker": \["\([^"]*\)".*/\1/')
echo "worker $index of $workers, args: $*"
if [ "$index" = 0 ]; then
  i=1
  while [ "$i" -lt "$workers" ]; do nc -l -p 2222 -e echo ready; i=$((i + 1)); done
  echo "all $workers workers met"
else
  for i in $(seq 150); do
    r=$(echo hello | nc -w 2 "${chief%:*}" 2222) && [ "$r" = ready ] && break
    sleep 0.2
  done
  echo "reached $chief: $r"
  [ "$r" = ready ]
fi
