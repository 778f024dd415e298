# The two commands of the README, and their companions.
.PHONY: up test chaos down logs status bench bench-engine k8s-check

up:        ## install what is missing, start PostgreSQL, Kafka, ingest, classifier API + worker
	@bash scripts/stack.sh up

test:      ## lint, type-check and run the whole suite on the real stack (throw-away data)
	@bash scripts/test.sh $(PYTEST_ARGS)

chaos:     ## the fault cases alone (also part of `make test`): poison, kills, broker restart, deadlock, hung database, a second checkout
	@SKIP_LINT=1 bash scripts/test.sh tests/chaos -q $(PYTEST_ARGS)
k8s-check: ## Helm chart lint/template/kubeconform (+CRDs), promtool rule tests, chart policy tests; no cluster needed
	@bash scripts/k8s-check.sh

down:      ## stop everything `make up` started
	@bash scripts/stack.sh down

logs:      ## follow the logs of every process
	@bash scripts/stack.sh logs

status:    ## what is running
	@bash scripts/stack.sh status

bench-engine: ## customer evaluations/s on one core (default scheme), with a floor measured in the same run
	@bash scripts/stack.sh install && mkdir -p bench-results && taskset -c 1 .venv/bin/python -m bench.engine --json bench-results/engine.json

bench:     ## every benchmark scenario (scale large; SCALE=small for a quick look) -> bench-results/latest.json
	@bash scripts/stack.sh install && bash scripts/stack.sh infra && env $$(bash scripts/stack.sh env) .venv/bin/python -m bench --scale $${SCALE:-large} $(BENCH_ARGS)
