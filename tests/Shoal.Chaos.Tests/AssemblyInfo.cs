// The scenarios measure failover times on real processes: they must not compete for the cores with each other.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
