"""Task factories (layer 4): the steps a pipeline DAG strings together.

- ``batches``   wait for a marker (deferred), claim the batch, skip a loaded one, archive its marker
- ``glue``      Glue jobs and crawlers with the project's defaults
- ``athena``    Athena queries of the claimed batch, from SQL files
- ``audit``     count a layer from its data (footers, ``count(*)``, an Athena answer, a Glue job report), reconcile
- ``quality``   Great Expectations schema checks of a layer's parquet footers
- ``warehouse`` the pipeline's DDL and the SQL that loads a batch
- ``notify``    the SUCCESS summary and the failure notifier
- ``producing`` for a DAG that writes batches: name the batch and what it covers
- ``frame``     the batch a DAG's tasks work on (set up by ``etl_toolkit.pipeline``), and ``step``,
                the ``@task`` every factory's Python steps are made with (one XCom each)
"""
