# Shortcuts for the README's commands; tasks.py needs nothing but Python.
.PHONY: run test bench lint setup
run:
	python3 tasks.py run
test:
	python3 tasks.py test $(PYTEST_ARGS)
bench:
	python3 tasks.py bench
lint:
	python3 tasks.py lint
setup:
	python3 tasks.py setup
