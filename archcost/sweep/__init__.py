"""Architecture what-ifs: grids over hardware and workload parameters with the best plan
re-searched at every point (``grid``), and the elasticity of step time to each resource;
generation priced at every point of a grid (``infer_grid``, ``sweep --infer``)."""
