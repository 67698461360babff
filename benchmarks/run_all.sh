#!/usr/bin/env bash
# Run the benchmarks at the sizes of a device: `bash benchmarks/run_all.sh cpu` (a 2-core machine,
# about 10 minutes) or `bash benchmarks/run_all.sh gpu` (issue #6's full sizes). Name some of
# data, train, eval, epoch after the device to run only those, e.g. one per call on a lent GPU
# machine with a 10-minute limit per command: `bash benchmarks/run_all.sh gpu data train`.
# Results go to benchmarks/results/*_<device>.json; BENCHMARKS.md quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:?usage: run_all.sh cpu|gpu [data] [train] [eval] [epoch] [zoo]}
shift
parts=${*:-data train eval epoch}
res=benchmarks/results

for part in $parts; do
  case "$tag:$part" in
    gpu:data)  python benchmarks/bench_data.py --clips 2000 --workers 4 8 "$(python -c 'import os; print(len(os.sched_getaffinity(0)))')" \
                 --batch_size 32 --repeats 2 --out $res/data_pipeline_gpu.json ;;
    gpu:train) python benchmarks/bench_train.py --batch_size 32 --compile --out $res/train_throughput_gpu.json ;;
    gpu:eval)  python benchmarks/bench_eval.py --videos 6097 --batch_size 16 --repeats 1 --out $res/eval_throughput_gpu.json ;;
    gpu:epoch) python benchmarks/bench_epoch.py --train_json $res/train_throughput_gpu.json --data_json $res/data_pipeline_gpu.json \
                 --measure --out $res/epoch_time_gpu.json ;;
    cpu:data)  python benchmarks/bench_data.py --clips 300 --out $res/data_pipeline_cpu.json ;;
    cpu:train) python benchmarks/bench_train.py --batch_size 2 --steps 3 --warmup 2 --repeats 5 --out $res/train_throughput_cpu.json ;;
    cpu:eval)  python benchmarks/bench_eval.py --videos 8 --batch_size 4 --workers 2 --repeats 2 --out $res/eval_throughput_cpu.json ;;
    cpu:zoo)   # one training-throughput row per model of the zoo at its input contract, batch 1 (memory)
               for arch in r2plus1d_tiny r3d_18 mc3_18 r2plus1d_18 r2plus1d_34; do
                 python benchmarks/bench_train.py --arch $arch --batch_size 1 --steps 3 --warmup 1 --repeats 3 --out $res/zoo/train_${arch}_cpu.json
               done
               for arch in s3d mvit_v1_b mvit_v2_s swin3d_t swin3d_s swin3d_b; do  # minutes per step on 2 cores: one window
                 python benchmarks/bench_train.py --arch $arch --batch_size 1 --steps 1 --warmup 1 --repeats 1 --out $res/zoo/train_${arch}_cpu.json
               done ;;
    cpu:epoch) python benchmarks/bench_epoch.py --train_json $res/train_throughput_cpu.json --data_json $res/data_pipeline_cpu.json \
                 --measure --clips 1000 --arch r2plus1d_tiny --size 32 --clip_len 8 --batch_size 16 --out $res/epoch_time_cpu.json ;;
    *) echo "unknown device or benchmark: $tag $part" >&2; exit 2 ;;
  esac
done
