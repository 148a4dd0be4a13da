"""`cascata bench`: the cost and speed of the whole pipeline, side by side with the whole
pipeline done the Powertools way (`benchmarks/baseline`).

Every figure comes from one run on one machine, so the ratios hold even on a noisy host:

- `metering`: the emulator in this process, clients that count requests and capacity units;
- `usage`: the declared pipeline and the baseline's, each driven over the same workload (and
  again with hot keys), counted: producers' ingest, every function, the scheduled ones run
  until idle, the archive, logs and stored bytes;
- `cpu`: CPU time per record of each handler, batches of 100 and 1,000, interleaved rounds;
- `coldstart`: import and initialisation of each handler module in fresh interpreters;
- `local`: the demo's end-to-end throughput against the emulator's raw Kinesis rate;
- `report`: prices the usage (`cascata.prices`), assembles the JSON and the table.
`run.run_bench` runs them in that order.
"""
