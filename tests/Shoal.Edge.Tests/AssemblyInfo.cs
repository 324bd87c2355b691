// Timing-sensitive tests (failover, streams, TTFT, 1,000 streams) must not compete for the two cores with each other.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
