// One engine, two cores: the Docker tests run one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
