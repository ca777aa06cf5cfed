# The two commands of the README: `make demo` and `make test` (the whole suite: lint,
# types, then every test); `make unit` runs the fast tier alone: tests/unit, laid out
# like osbuilder/, without the integration and boot tests.
# Each installs what it needs first: Debian packages (as root, only when
# missing) and a virtualenv with osbuilder in editable mode.

SHELL := /bin/bash
# Debian's interpreter, which the apt step installs (python3, python3-venv) and the guest
# runs too: not the first python3 in PATH, which may be a local build (pyenv's, built
# without optimisations, runs Python code 1.6x slower).
PYTHON ?= /usr/bin/python3
VENV ?= .venv
BIN := $(VENV)/bin

# Debian packages the tools and tests need: mmdebstrap and kmod build packages and
# kernels; the registry, skopeo and htpasswd are real peers of the integration tests;
# QEMU, busybox and cpio boot what is built; xorriso, SYSLINUX, mtools, dosfstools make the
# BIOS boot media, systemd's EFI stub, binutils (objcopy) and fdisk (sfdisk) the EFI ones,
# which boot on OVMF; python3-keystone and python3-glance are a real OpenStack (identity
# and image services) for the push tests; openssh-client logs in to the sshd example;
# qemu-system-arm and qemu-efi-aarch64 (UEFI) boot arm64 systems; squashfs-tools-ng
# (tar2sqfs) makes kernel+squashfs roots, and reads them back in the tests (sqfs2tar);
# erofs-utils reads kernel+erofs roots back in the tests (fsck.erofs, dump.erofs);
# apt-utils (apt-ftparchive) indexes a locked build's checked .debs for mmdebstrap, and
# with gpg/gpg-agent makes the tests' signed Debian repository; nginx is the TLS front and
# the blob host (the registry redirects blob reads to it) of the registries-in-the-wild
# tests and `bench/pull.py --https`. Verified boot (docs/verified-boot.md): cryptsetup-bin
# (veritysetup) writes and checks dm-verity hash trees, osslsigncode signs UKIs (at a fixed
# time, so reproducibly) and sbsigntool checks them, swtpm and swtpm-tools give `run --tpm`
# its TPM 2.0, systemd-measure (systemd) predicts PCR 11 for a UKI and tpm2-tools reads
# PCRs in the tests.
APT_PACKAGES := python3 python3-venv mmdebstrap kmod docker-registry skopeo apache2-utils \
	qemu-system-x86 qemu-utils busybox-static cpio zstd libarchive-tools runc crun \
	golang-github-opencontainers-specs-dev redis-tools \
	xorriso isolinux syslinux syslinux-common mtools dosfstools \
	systemd-boot-efi binutils fdisk ovmf python3-keystone python3-glance openssh-client \
	qemu-system-arm qemu-efi-aarch64 squashfs-tools-ng erofs-utils apt-utils gpg gpg-agent \
	nginx cryptsetup-bin sbsigntool osslsigncode swtpm swtpm-tools tpm2-tools systemd

# The content store `make packages` and `make demo` use (the user's default store).
OSBUILDER := $(BIN)/osbuilder

.PHONY: demo test unit deps apt venv lint typecheck pytest docs bench clean packages

# The Redis OS: build it, boot it in the background with 6379 published, ask it PING.
DEMO_PORT ?= 6379

# The demo signs what it builds and builds only what is signed: a key of its own
# (made on first use, no password), every package signed with it, and a policy that
# requires it for osbuilder's images, which examples/redis.yml's `trust:` makes mandatory.
DEMO_TRUST := .cache/demo-trust
DEMO_POLICY := {"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": \
	{"docker.io/osbuilder": [{"type": "sigstoreSigned", "keyPath": "$(abspath $(DEMO_TRUST))/demo.pub"}]}}}

demo: deps
	@mkdir -p $(DEMO_TRUST)
	@test -e $(DEMO_TRUST)/demo.key || OSBUILDER_KEY_PASSWORD= $(OSBUILDER) key generate $(DEMO_TRUST)/demo
	echo '$(DEMO_POLICY)' > $(DEMO_TRUST)/policy.json
	OSBUILDER_KEY_PASSWORD= $(MAKE) --no-print-directory packages SIGN_KEY=$(DEMO_TRUST)/demo.key
	$(OSBUILDER) validate examples/*.yml
	$(OSBUILDER) build --policy $(DEMO_TRUST)/policy.json examples/redis.yml
	$(OSBUILDER) run --detach --net restricted --publish $(DEMO_PORT):6379 \
		--wait-tcp 6379 --timeout 300 output/redis \
		|| { $(OSBUILDER) stop output/redis 2>/dev/null; exit 1; }
	redis-cli -p $(DEMO_PORT) ping; status=$$?; \
		$(OSBUILDER) stop output/redis; exit $$status

# Every package and kernel image, into the content store (up-to-date ones are skipped);
# `make packages ARCH=arm64` for arm64 (each tag then names an index of both), all but
# the ones whose recipe runs maintainer scripts (variant: essential), which needs a host
# that can run that architecture's programs. Each installs the versions its build.lock
# names; --refresh-missing re-locks those Debian's mirror has dropped since (one line
# each; the lock and the tag change, and the examples follow through `@pkg:`), so this
# keeps working on a fresh machine at any date. `make packages SIGN_KEY=KEY` signs each
# image with that cosign key (its password in $$OSBUILDER_KEY_PASSWORD).
# `make packages REGISTRY=HOST/NAMESPACE` shares them between machines through that
# registry (docs/sharing-packages.md): what is there is pulled instead of built, and with
# PUSH=1 what is built is pushed there (signed, with SIGN_KEY).
SCRIPTED = pkg/ca-certificates
packages: deps
	$(OSBUILDER) pkg build --refresh-missing $(if $(ARCH),--arch $(ARCH)) \
		$(if $(SIGN_KEY),--sign-key $(SIGN_KEY)) \
		$(if $(REGISTRY),--cache-from $(REGISTRY) $(if $(PUSH),--push)) kernels/* \
		$(if $(ARCH),$(filter-out $(SCRIPTED),$(wildcard pkg/*)),pkg/*)

test: deps lint typecheck pytest

deps: apt venv

apt:
	@scripts/ensure-apt $(APT_PACKAGES)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $@

lint: venv
	$(BIN)/ruff check osbuilder tests bench
	$(BIN)/ruff format --check osbuilder tests bench

typecheck: venv
	$(BIN)/mypy --strict osbuilder

pytest: venv
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest tests/unit

# Regenerate the spec reference from the models, and the format reference (docs/formats.md,
# README's table) from formats/catalog.py (unit tests check both are current).
docs: venv
	$(BIN)/osbuilder schema --format markdown > docs/spec.md
	$(BIN)/python -m osbuilder.formats.reference

# Every benchmark runs, even after one misses its target; the status says if any did.
BENCHMARKS := validate pull pkg build size boot push push_system lock

bench: deps
	@status=0; for name in $(BENCHMARKS); do \
		echo "$(BIN)/python bench/$$name.py"; $(BIN)/python bench/$$name.py || status=1; \
	done; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find output -mindepth 1 ! -name .gitkeep -delete
