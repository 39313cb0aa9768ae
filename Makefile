# Re-execute the Jupyter notebooks in place so their committed outputs match
# the current tool; see notebooks/README.md. CI runs notebooks/run.sh --check.
.PHONY: notebooks
notebooks:
	notebooks/run.sh
