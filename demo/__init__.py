"""`streamrec demo`: the whole component on one machine with a synthetic workload."""
