# Every target creates .venv from the pinned files when it is missing or stale,
# so a fresh clone needs nothing but python3 (3.11 or 3.12) and make.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
PIPELINE ?= orders
ORDERS   ?= 2000
# Glue jobs on PySpark (devstack/glue_spark) need Java 17 and Hadoop's S3A file system for s3://
# paths: hadoop-aws and the AWS SDK it is built against, taken from the PyPI sdist of
# sagemaker-pyspark, which bundles both (no Maven repository needed).
SPARK_JARS_DIR := .local/spark-jars
SPARK_JARS     := hadoop-aws-3.3.1.jar aws-java-sdk-bundle-1.11.901.jar
JARS_PACKAGE   := sagemaker-pyspark==1.4.5
JARS_SDIST     := sagemaker_pyspark-1.4.5
JAVA_PACKAGE   := openjdk-17-jre-headless
# The Python (non-Spark) Glue scripts' tests run a second time in a venv with AWS Glue 5.0's own
# pyarrow, pandas and numpy (constraints/glue5-python.txt); that run fails if fewer than
# GLUE5_MIN_PASSED of them pass, so a broken venv cannot skip them silently.
GLUE5_PYTHON     ?= python3.11
GLUE5_VENV       := .local/glue5-venv
GLUE5_STAMP      := $(GLUE5_VENV)/.installed
GLUE5_TESTS      := tests/unit/test_orders_glue_scripts.py tests/unit/test_orders_batch.py \
                    tests/unit/test_orders_dedupe_explode.py \
                    tests/unit/test_totesys_glue_scripts.py tests/unit/test_totesys_remodel.py \
                    tests/unit/test_ecommerce_glue_script.py tests/unit/test_glue_wheels.py \
                    tests/unit/test_arrow_postgres.py
GLUE5_MIN_PASSED := 160

.PHONY: help venv spark-runtime glue-wheels glue5-venv test-glue5 test lint demo stack airflow bundle bench lock clean

help:
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# --compile-bytecode: every Airflow process, task, test process and local Glue run imports Airflow,
# Great Expectations, boto3 and pyarrow; compiled once here, not from source in each process (and
# cached nowhere where PYTHONDONTWRITEBYTECODE is set).
$(STAMP): requirements-local.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned packages into $(VENV) (first run only)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.12.3
	@$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-local.txt
	@touch $@

venv: $(STAMP) spark-runtime ## create or refresh .venv from requirements-local.txt, with the Spark runtime

# Checked on every run (cheap), so `make clean` or a missing java is put right by the next target.
spark-runtime: $(STAMP) ## Java 17 and the S3A jars in .local/spark-jars for Glue jobs on PySpark (skipped when present)
	@command -v java >/dev/null || test -x "$$JAVA_HOME/bin/java" || { \
	  echo "installing Java 17 ($(JAVA_PACKAGE)) for Glue jobs on PySpark"; \
	  sudo=; test "$$(id -u)" = 0 || sudo="sudo -n"; \
	  mkdir -p /usr/share/man/man1 2>/dev/null || $$sudo mkdir -p /usr/share/man/man1 2>/dev/null; \
	  { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $(JAVA_PACKAGE) >/dev/null; } \
	  || echo "WARNING: could not install $(JAVA_PACKAGE); Glue jobs on PySpark fail until Java 17 is installed"; }
	@$(foreach jar,$(SPARK_JARS),test -f $(SPARK_JARS_DIR)/$(jar) &&) true || { \
	  echo "installing the S3A jars for Glue jobs on PySpark into $(SPARK_JARS_DIR) (first run only)"; \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps \
	    "$(JARS_PACKAGE)" -d "$$tmp" && \
	  tar -xzf "$$tmp/$(JARS_SDIST).tar.gz" -C "$$tmp" $(addprefix $(JARS_SDIST)/deps/jars/,$(SPARK_JARS)) && \
	  mkdir -p $(SPARK_JARS_DIR) && \
	  mv $(addprefix "$$tmp"/$(JARS_SDIST)/deps/jars/,$(SPARK_JARS)) $(SPARK_JARS_DIR)/; }

# Checked on every run (cheap): pip runs only for a pin of include/glue_wheels.txt without its wheel.
glue-wheels: $(STAMP) ## the Glue jobs' wheels (include/glue_wheels.txt) for Glue 5.0 in include/glue_wheels/ (skipped when present)
	@$(BIN)/python -m devstack.glue_wheels download

$(GLUE5_STAMP): constraints/glue5-python.txt include/glue_wheels.txt include/glue5_provided_modules.txt \
                requirements-local.txt devstack/glue_wheels.py | $(STAMP)
	@echo "building $(GLUE5_VENV): Python 3.11 with AWS Glue 5.0's pyarrow, pandas and numpy (first run only)"
	@rm -rf $(GLUE5_VENV)
	@$(BIN)/uv venv --quiet --python $(GLUE5_PYTHON) $(GLUE5_VENV)
	@$(BIN)/python -m devstack.glue_wheels glue5-constraints > $(GLUE5_VENV)/constraints.txt
	@$(BIN)/uv pip install --quiet --compile-bytecode --python $(GLUE5_VENV)/bin/python \
	  -r constraints/glue5-python.txt -c $(GLUE5_VENV)/constraints.txt
	@touch $@

glue5-venv: $(GLUE5_STAMP) ## create or refresh .local/glue5-venv: Python 3.11 with AWS Glue 5.0's pyarrow, pandas, numpy

test-glue5: $(GLUE5_STAMP) ## the Python Glue scripts' tests again, in .local/glue5-venv (AWS Glue 5.0's versions)
	GLUE5_MIN_PASSED=$(GLUE5_MIN_PASSED) $(GLUE5_VENV)/bin/python -m pytest -p no:cacheprovider -m glue5 $(GLUE5_TESTS)

lint: $(STAMP) ## ruff (with Airflow's AIR rules), then the toolkit's layers (import-linter)
	$(BIN)/ruff check .
	$(BIN)/cfn-lint deploy/*.yaml
	PYTHONPATH=plugins $(BIN)/lint-imports --no-cache

test: $(STAMP) spark-runtime glue-wheels lint ## lint, then every test on the local stack (started by the tests), then test-glue5
	$(BIN)/pytest
	@$(MAKE) --no-print-directory test-glue5

demo: $(STAMP) spark-runtime glue-wheels ## run a pipeline end to end on the local stack and print its report
	$(BIN)/python -m devstack demo --pipeline $(PIPELINE) --orders $(ORDERS)

stack: $(STAMP) spark-runtime glue-wheels ## the local AWS emulator and warehouse in the foreground; writes .local/stack.env
	$(BIN)/python -m devstack up

airflow: $(STAMP) spark-runtime glue-wheels ## the local stack plus Airflow (UI on http://127.0.0.1:8080, scheduler, triggerer, DAG processor)
	$(BIN)/python -m devstack airflow

bundle: $(STAMP) glue-wheels ## build dist/mwaa/: the dags prefix with include/, plugins.zip, requirements.txt
	$(BIN)/python -m devstack bundle --out dist/mwaa

bench: $(STAMP) spark-runtime glue-wheels ## benchmarks, each printing a ratio against its baseline
	$(BIN)/python -m bench

lock: ## recompile requirements-local.txt from requirements-local.in
	@test -x $(BIN)/uv || $(MAKE) venv
	grep -vE '^(numpy|scipy|scikit-learn|ray|pyspark-client)==' constraints/mwaa-3.3.1-py3.12.txt \
	  | sed '1i # Generated by `make lock`: the vendored MWAA 3.3.1 constraints without the pins that need Python 3.12.' \
	  > constraints/local-py3.11.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 -c constraints/local-py3.11.txt \
	  requirements-local.in -o requirements-local.txt --no-header

clean: ## remove the local stack's data, build output and caches (keeps .venv)
	rm -rf .local dist .pytest_cache .ruff_cache
