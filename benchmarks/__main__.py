"""Run every benchmark and print its table: `python -m benchmarks`."""

from benchmarks import bench_modbus, bench_pipeline

print("## Energy and PUE stage (one core)\n")
bench_pipeline.main([])
print("\n## Modbus polling (collector process; simulator in another process)\n")
bench_modbus.main([])
