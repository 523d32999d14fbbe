"""The shared toolkit behind every pipeline DAG, in five layers; each imports only from below.

1. settings and the contract: ``settings`` (connection ids, Variable names, knobs), ``contract``
   (the marker, the ``Pipeline``/``Layer`` declaration, the exceptions), ``messages`` (what a
   notification says), ``paths`` (finds ``include/`` in the repository and the MWAA bundle), and
   under them ``task_cache`` (what a task reads once per try: the environment, the claim);
2. I/O: ``s3`` (listings, parquet footers, small JSON), ``sql`` (the warehouse SQL runner),
   ``markers`` (the marker store and its archive), ``sns`` (publishing), ``aws_session`` (the
   provider's session factory: one parsed copy of the AWS models per process);
3. the audit ledger and the checks: ``ledger`` (claims, attempts, layer counts, batch status),
   ``reconcile`` (pure comparisons), ``schema_checks`` (Great Expectations);
4. task factories: ``tasks.batches``, ``tasks.glue``, ``tasks.audit``, ``tasks.quality``,
   ``tasks.warehouse``, ``tasks.notify``, ``tasks.producing``, and ``tasks.frame`` (the batch a
   DAG's tasks work on);
5. pipeline assembly: ``pipeline`` (default_args, params, and ``marker_dag``, the frame every
   marker-driven DAG shares).

``make lint`` fails on an upward import or a cycle (import-linter, contracts in pyproject.toml).
Modules never import pandas, pyarrow or Great Expectations at module level, so DAG files stay
cheap to parse.
"""
