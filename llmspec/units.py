"""Units, stated once. Bytes are bytes; bandwidths are GB/s = 1e9 bytes/s (datasheet units)."""

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4
GB = 10**9  # datasheet gigabyte, and the 1e9 in GB/s
