# Shortcuts for the two commands of the README (which work without make, too).
.PHONY: run test bench clean
run:
	@bash scripts/run.sh
test:
	@bash scripts/test.sh
bench:
	@.venv/bin/python benchmarks/run_all.py
clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
