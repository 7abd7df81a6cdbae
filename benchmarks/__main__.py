"""Run every benchmark and print its table: `python -m benchmarks`."""

from benchmarks import (
    bench_freecooling,
    bench_influx,
    bench_ingest,
    bench_modbus,
    bench_mqtt,
    bench_pipeline,
    bench_snmp,
)

print("## Energy and PUE stage (one core)\n")
bench_pipeline.main([])
print("\n## Modbus polling (collector process; simulator in another process)\n")
bench_modbus.main([])
print("\n## SNMP (collector process; snmpd in another process)\n")
bench_snmp.main([])
print("\n## MQTT ingest (one process; publisher in another, through Mosquitto)\n")
bench_mqtt.main([])
print("\n## InfluxDB writes (one process into real servers on loopback)\n")
bench_influx.main([])
print("\n## CSV backfill: pue ingest-csv of a month of 1-minute data, 1,000 meters (43 M rows)\n")
bench_ingest.main([])
print("\n## Free cooling: `pue free-cooling --epw` (8,760 h) and a year of 1-minute weather (525,600 rows)\n")
bench_freecooling.main([])
