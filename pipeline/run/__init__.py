"""What every training stage runs on: the epoch loop (training), resumption, data parallelism, mixed
precision, GPU claims, progress lines, DVCLive tracking, logs, device and seeding, and exit codes."""
