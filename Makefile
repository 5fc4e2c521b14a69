# spike -- one plain Makefile.
#
#   make run        build and start spiked on 127.0.0.1:8080 with ./data and a demo event
#   make test       build everything (release, ASan+UBSan, TSan) and run every test
#                   (make check is the same)
#   make bench      micro and end-to-end engine benchmarks (not tests)
#   make deps       install the Debian packages this needs (the only target that
#                   installs; test and run call it only when something is missing)
#   make install    libspike (.so, .a), spike.h, spike_uv.h, spike.pc, spike-uv.pc,
#                   and spiked with its systemd unit and config file
#   make uninstall  remove what install put there (same PREFIX, LIBDIR, DESTDIR)
#   make deb        Debian binary packages from packaging/debian (docs/embedding.md)
#   make relay-chaos  spike-relay under many kills of itself, spiked and RabbitMQ
#   make bench-relay  spike-relay's pace (changes/s) next to the reference consumer's
#
# Build outputs go under build/<variant>/: rel (-O2), asan (ASan+UBSan), tsan.
# What a packager or CI sets, all optional:
#   CC CPPFLAGS CFLAGS LDFLAGS   honoured everywhere; CFLAGS come after the defaults
#   V=1                          print every command
#   WERROR=1                     warnings are errors (make test sets it)
#   PREFIX DESTDIR LIBDIR INCLUDEDIR PKGCONFIGDIR   where install puts things
#   LLHTTP_DIR LLHTTP_INCLUDE    llhttp's C sources and header (Debian: node-llhttp)

# gcc unless the caller names a compiler: on a machine whose only compiler
# is clang (make deps installs it, for the fuzzers), Debian points cc at it,
# and make test's -Werror build and valgrind's reading of clang's debug
# info both failed there.
ifeq ($(origin CC),default)
CC := gcc
endif
PREFIX  ?= /usr/local
DESTDIR ?=
# Multiarch: /usr/local/lib/x86_64-linux-gnu on Debian (in ld.so's and
# pkg-config's default paths); plain $(PREFIX)/lib where the compiler has no
# multiarch triplet.
MULTIARCH    := $(shell $(CC) -print-multiarch 2>/dev/null)
LIBDIR       ?= $(PREFIX)/lib$(if $(MULTIARCH),/$(MULTIARCH))
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSCONFDIR   ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR      ?= $(PREFIX)/lib/systemd/system
WERROR  ?= 0
V       ?= 0
Q       := $(if $(filter 1,$(V)),,@)
# say WHAT FILE: a short progress line, unless V=1 prints the commands.
say      = $(if $(filter 1,$(V)),@:,@echo "  $(1)	$(2)")

PKGS      := lmdb libuv msgpack libxxhash libjwt
# libspike itself needs only these (spike.pc's Requires.private).
LIB_PKGS  := lmdb msgpack libxxhash
# libsqlite3-dev: examples/feed_sqlite.c, the feed consumer test_ops runs.
# librabbitmq-dev: relay/, spike-relay, which publishes the feed to RabbitMQ
# (and test_relay's consumer).
# DEB_RUN: what make run needs to build and start spiked (the compiler
# included: a fresh Debian has none) and the curl its printed lines use;
# make test installs the rest too.
DEB_RUN   := gcc libc6-dev liblmdb-dev libuv1-dev node-llhttp libmsgpack-dev libxxhash-dev libjsmn-dev \
             libjwt-dev pkg-config curl
DEB_LIBS  := $(DEB_RUN) libsqlite3-dev librabbitmq-dev
# libclang-rt-dev: clang's sanitizer and libFuzzer runtimes, only a
# Recommends of clang, so --no-install-recommends leaves it out. curl:
# tests/test_api_doc.sh and the lines `make run` prints. abigail-tools:
# abidiff, the ABI check in make test. prometheus: promtool, which lints
# /metrics in tests/test_ops.c; systemd: systemd-analyze, which checks the
# unit file in tests/test_unit.sh. nginx-light: the partition router in
# tests/test_scaleout.sh (deploy/). rabbitmq-server: the broker
# tests/test_relay.c starts as a private instance of its own (the
# package's own service is never used; Debian's policy-rc.d may keep it
# from starting at all). chromium: a real headless browser that loads
# /dashboard in tests/test_dashboard.sh and reads what the page shows.
# build-essential, debhelper, dpkg-dev: make deb (dpkg-buildpackage
# refuses to start without build-essential, which brings g++).
DEB_TOOLS := valgrind clang libclang-rt-dev curl abigail-tools prometheus systemd nginx-light \
             rabbitmq-server chromium
DEB_PACK  := build-essential debhelper dpkg-dev
DEB_BENCH := wrk nginx-light nghttp2-client hey
LLHTTP_DIR     ?= /usr/share/llhttp
LLHTTP_INCLUDE ?= /usr/share/include/llhttp

SPIKE_VERSION := $(shell sed -n 's/^\#define SPIKE_VERSION_STRING "\(.*\)"/\1/p' include/spike.h)
SPIKE_ABI     := $(shell sed -n 's/^\#define SPIKE_ABI_VERSION \([0-9]*\).*/\1/p' include/spike.h)
SONAME        := libspike.so.$(SPIKE_ABI)

# Evaluated lazily: `make deps` may have just installed pkg-config's files.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
LIB_LIBS   = $(shell pkg-config --libs $(LIB_PKGS) 2>/dev/null) -lpthread

WARN     := -std=gnu11 -Wall -Wextra -Wpedantic $(if $(filter 1,$(WERROR)),-Werror)
# Each folder sees only the headers of the layers below it, so a wrong arrow
# fails to compile: net -> spike.h -> engine -> store, common beside all.
INC_common   := -iquote include -iquote common
INC_store    := -iquote include -iquote common -iquote store
INC_engine   := -iquote include -iquote common -iquote engine -iquote store
INC_net      := -iquote include -iquote common -iquote net -I$(LLHTTP_INCLUDE)
INC_examples := -iquote include -iquote relay
INC_relay    := -iquote relay
INC_bench    := -iquote include -iquote common -iquote bench -I$(LLHTTP_INCLUDE)
INC_tests    := -iquote include -iquote common -iquote engine -iquote store -iquote net \
                -iquote bench -iquote tests -I$(LLHTTP_INCLUDE)
INCLUDES     := $(INC_tests)
# bench/micro measures the engine from inside.
inc_for = $(if $(filter bench/micro/%,$(1)),$(INC_tests),$(INC_$(firstword $(subst /, ,$(1)))))
# The order: the caller's CPPFLAGS, the defaults, the variant's, then the
# caller's CFLAGS, which so have the last word (-O, -g, hardening).
BASE_CFLAGS = $(WARN) -g -fno-omit-frame-pointer -fPIC $(PKG_CFLAGS)
compile     = $(CC) $(CPPFLAGS) $(BASE_CFLAGS) $(1) $(CFLAGS)

OPT_rel  := -O2
OPT_asan := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
OPT_tsan := -O1 -fsanitize=thread
LD_rel   :=
LD_asan  := -fsanitize=address,undefined
LD_tsan  := -fsanitize=thread

LIB_SRC    := $(sort $(wildcard common/*.c engine/*.c store/*.c))
# The server's modules, as an internal library that spiked and the tests link.
NET_SRC    := $(filter-out net/main.c,$(sort $(wildcard net/*.c)))
LLHTTP_SRC := llhttp.c api.c http.c
FUZZERS    := fuzz_body fuzz_record fuzz_route
# spikebench: the P99 harness (bench/), and what its tests link.
BENCH_SRC  := bench/spikebench.c bench/hist.c bench/plot.c bench/js.c bench/mint.c \
              bench/scenario.c bench/load.c bench/report.c bench/verify.c
BENCH_TESTS := test_sb_scenario test_sb_load test_sb_report test_sb_verify
TEST_UNITS := test_ring test_slab test_limit test_ids test_wheel test_codec test_order test_misuse \
              test_memory_ack test_clock test_migrate test_powerloss test_sim test_races \
              test_body test_engine test_lifecycle test_stress test_crash test_http test_spikebench \
              test_callbacks test_errors test_ops test_stats
EXAMPLES   := embed epoll feed_sqlite
MICRO      := bench_ring bench_reserve bench_writer bench_lifecycle bench_disk

.PHONY: FORCE all lib deps deps-check deps-run deb-deps bench-deps test test-build test-run check run bench bench-http bench-scaleout install \
        uninstall deb clean format powerloss soak-crash soak sim diskfull abi-check abi-dump \
        bench-backup bench-stores

all: build/rel/libspike.a build/rel/dist/libspike.a build/rel/libspike.so build/rel/spiked build/rel/spikebench \
     $(addprefix build/rel/examples/,$(EXAMPLES)) build/rel/spike-relay

# What make install needs, and no more (packaging/debian builds this).
lib: build/rel/dist/libspike.a build/rel/libspike.so

# ---- dependencies -----------------------------------------------------------

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT   = DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends

# A package counts as present only when dpkg says it is installed: clang on
# its own, without its runtimes, cannot link the fuzzers.
missing_debs = for p in $(1); do \
	  [ "$$(dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null)" = installed ] || \
	    printf ' %s' $$p; \
	done

# install_missing LABEL,PACKAGES: apt-get install those not installed.
# The tests' servers (nginx-light, rabbitmq-server) are installed for their
# programs, which the tests start privately on 127.0.0.1: a policy-rc.d
# made for the install keeps Debian from starting their system services
# (nginx on every interface's port 80), and where systemd runs, those just
# installed are disabled, so they do not start at boot either.
SERVICES := nginx-light:nginx rabbitmq-server:rabbitmq-server
install_missing = missing="$$($(call missing_debs,$(2)))"; \
	if [ -n "$$missing" ]; then \
	  echo "$(1): installing$$missing"; \
	  prc=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    prc=/usr/sbin/policy-rc.d; \
	    printf '\043!/bin/sh\n\043 made by spike make deps for one apt-get install\nexit 101\n' | \
	      $(SUDO) tee $$prc >/dev/null && $(SUDO) chmod 755 $$prc; fi; \
	  $(APT) $$missing || { $(SUDO) apt-get update && $(APT) $$missing; }; rc=$$?; \
	  [ -z "$$prc" ] || $(SUDO) rm -f $$prc; \
	  if [ -d /run/systemd/system ]; then for ps in $(SERVICES); do \
	    case " $$missing " in *" $$(echo $$ps | cut -d: -f1) "*) \
	      $(SUDO) systemctl disable --now $$(echo $$ps | cut -d: -f2) >/dev/null 2>&1 || true;; \
	    esac; done; fi; \
	  exit $$rc; \
	fi

deps:
	@$(call install_missing,deps,$(DEB_LIBS) $(DEB_TOOLS))

# test and run: apt only when something is missing, and saying what; run
# only what it needs to build and start spiked.
deps-check:
	@missing="$$($(call missing_debs,$(DEB_LIBS) $(DEB_TOOLS)))"; \
	if [ -n "$$missing" ]; then \
	  echo "missing Debian packages:$$missing; installing them with make deps"; \
	  $(MAKE) --no-print-directory deps; \
	fi

deps-run:
	@$(call install_missing,make run,$(DEB_RUN))

bench-deps: deps
	@command -v wrk >/dev/null && command -v nginx >/dev/null && command -v h2load >/dev/null && \
	  command -v hey >/dev/null || \
	{ $(APT) $(DEB_BENCH) || { $(SUDO) apt-get update && $(APT) $(DEB_BENCH); }; }

# ---- objects, per variant ---------------------------------------------------

# What compiled a variant's objects: when the compiler, its version or the
# caller's flags change, the variant is built again (make run's objects from
# clang were linked with make test's from gcc, and valgrind could not read
# the mixed debug info). The stamp is written only when it differs.
TOOLCHAIN = $(CC) $(shell $(CC) -dumpfullversion -dumpversion 2>/dev/null | head -n 1) \
            CPPFLAGS=$(CPPFLAGS) CFLAGS=$(CFLAGS)
build/%/.toolchain: FORCE
	@mkdir -p $(@D)
	@echo '$(TOOLCHAIN)' | cmp -s - $@ 2>/dev/null || echo '$(TOOLCHAIN)' > $@
FORCE:

define variant
build/$(1)/%.o: %.c build/$(1)/.toolchain
	@mkdir -p $$(@D)
	$$(call say,CC,$(1)/$$<)
	$(Q)$$(call compile,$$(call inc_for,$$<) $$(OPT_$(1))) -MMD -MP -c $$< -o $$@

build/$(1)/llhttp/%.o: $(LLHTTP_DIR)/%.c build/$(1)/.toolchain
	@mkdir -p $$(@D)
	$$(call say,CC,$(1)/llhttp/$$(<F))
	$(Q)$$(CC) $$(CPPFLAGS) -std=gnu11 -g -fPIC -w -I$(LLHTTP_INCLUDE) $$(OPT_$(1)) $$(CFLAGS) -c $$< -o $$@

# libspike's own objects export only what spike.h marks SPIKE_EXTERN.
$(patsubst %.c,build/$(1)/%.o,$(LIB_SRC)): BASE_CFLAGS += -fvisibility=hidden

# The internal archive: every module's symbols stay global, for spiked, the
# tests and the micro-benchmarks, which call the modules directly.
build/$(1)/libspike.a: $(patsubst %.c,build/$(1)/%.o,$(LIB_SRC))
	@rm -f $$@
	$$(call say,AR,$$@)
	$(Q)$$(AR) rcs $$@ $$^

build/$(1)/libspiked.a: $(patsubst %.c,build/$(1)/%.o,$(NET_SRC)) $(addprefix build/$(1)/llhttp/,$(LLHTTP_SRC:.c=.o))
	@rm -f $$@
	$$(call say,AR,$$@)
	$(Q)$$(AR) rcs $$@ $$^

build/$(1)/tests/%: build/$(1)/tests/%.o build/$(1)/tests/test.o build/$(1)/tests/http_client.o \
                    build/$(1)/libspiked.a build/$(1)/libspike.a
	$$(call say,LD,$$@)
	$(Q)$$(CC) $$(LD_$(1)) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/spiked: build/$(1)/net/main.o build/$(1)/libspiked.a build/$(1)/libspike.a
	$$(call say,LD,$$@)
	$(Q)$$(CC) $$(LD_$(1)) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/spikebench: $(patsubst %.c,build/$(1)/%.o,$(BENCH_SRC)) build/$(1)/libspiked.a build/$(1)/libspike.a
	$$(call say,LD,$$@)
	$(Q)$$(CC) $$(LD_$(1)) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)

# plot.o uses common/ (log_utf8_seq), so libspike.a comes after it
build/$(1)/tests/test_hist: build/$(1)/tests/test_hist.o build/$(1)/tests/test.o \
    build/$(1)/tests/http_client.o build/$(1)/bench/hist.o build/$(1)/bench/plot.o \
    build/$(1)/libspiked.a build/$(1)/libspike.a
	$$(call say,LD,$$@)
	$(Q)$$(CC) $$(LD_$(1)) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)
$(addprefix build/$(1)/tests/,$(BENCH_TESTS)): build/$(1)/tests/%: build/$(1)/tests/%.o build/$(1)/tests/test.o \
    build/$(1)/tests/http_client.o $(patsubst %.c,build/$(1)/%.o,$(filter-out bench/spikebench.c,$(BENCH_SRC))) \
    build/$(1)/libspiked.a build/$(1)/libspike.a
	@echo "  LD    $$@"
	@$$(CC) $$(LD_$(1)) -o $$@ $$^ $$(PKG_LIBS)
build/$(1)/tests/test_hostile build/$(1)/tests/hostile_load: build/$(1)/tests/hostile.o
build/$(1)/tests/stall_server: build/$(1)/tests/stall_server.o
	$$(call say,LD,$$@)
	$(Q)$$(CC) $$(LD_$(1)) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/examples/%: build/$(1)/examples/%.o build/$(1)/libspike.a
	$$(call say,LD,$$@)
	$(Q)$$(CC) $$(LD_$(1)) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/bench/micro/%: build/$(1)/bench/micro/%.o build/$(1)/libspike.a
	$$(call say,LD,$$@)
	$(Q)$$(CC) $$(LD_$(1)) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)
endef
$(foreach v,rel asan tsan,$(eval $(call variant,$(v))))

.SECONDARY:

# The feed consumer speaks HTTP and SQLite, not libspike; test_ops reads
# what it wrote.
build/%/examples/feed_sqlite: build/%/examples/feed_sqlite.o build/%/relay/feed.o
	@echo "  LD    $@"
	@$(CC) $(LD_$*) -o $@ $^ -lsqlite3
build/rel/tests/test_ops build/asan/tests/test_ops build/tsan/tests/test_ops: PKG_LIBS += -lsqlite3

# spike-relay: the feed into RabbitMQ (relay/), HTTP and librabbitmq, not
# libspike. test_relay drives it and a real broker, and consumes with
# librabbitmq too.
build/%/spike-relay: build/%/relay/relay.o build/%/relay/feed.o
	$(call say,LD,$@)
	$(Q)$(CC) $(LD_$*) $(LDFLAGS) -o $@ $^ -lrabbitmq
build/rel/tests/test_relay build/asan/tests/test_relay: PKG_LIBS += -lrabbitmq

# libFuzzer targets: clang, ASan+UBSan, every source compiled in.
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
build/fuzz/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(@D)
	$(Q)clang -g -O1 -w -fsanitize=address,undefined -I$(LLHTTP_INCLUDE) -c $< -o $@

build/fuzz/%: tests/%.c $(NET_SRC) $(LIB_SRC) $(addprefix build/fuzz/llhttp/,$(LLHTTP_SRC:.c=.o))
	@mkdir -p $(@D)
	$(call say,FUZZ,$@)
	$(Q)clang $(CPPFLAGS) $(WARN) -g -O1 $(INCLUDES) $(PKG_CFLAGS) $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS)

# The LD_PRELOAD shim test_crash's power-loss run is under.
build/rel/tests/libpowerloss.so: tests/powerloss.c
	@mkdir -p $(@D)
	$(call say,SO,$@)
	$(Q)$(CC) $(CPPFLAGS) $(WARN) -g -O2 -shared -fPIC $(CFLAGS) $(LDFLAGS) -o $@ $< -ldl -lpthread

# The LD_PRELOAD fault injector test_fault runs under.
build/rel/tests/libfault.so: tests/fault.c
	@mkdir -p $(@D)
	$(call say,SO,$@)
	$(Q)$(CC) $(CPPFLAGS) $(WARN) -g -O2 -shared -fPIC $(CFLAGS) $(LDFLAGS) -o $@ $< -ldl

# The LD_PRELOAD allocation-failure injector test_failalloc runs under.
build/rel/tests/libfailalloc.so: tests/failalloc.c
	@mkdir -p $(@D)
	@echo "  SO    $@"
	@$(CC) $(WARN) -g -O2 -shared -fPIC -o $@ $< -ldl

build/rel/libspike.so: $(patsubst %.c,build/rel/%.o,$(LIB_SRC))
	$(call say,SO,$@)
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) $(LDFLAGS) -o $@ $^ $(LIB_LIBS)

# The archive `make install` installs: the library linked into one object
# whose hidden symbols are made local, so that a program linking it
# statically sees only spike_* and cannot collide with a module's name.
build/rel/dist/libspike.a: $(patsubst %.c,build/rel/%.o,$(LIB_SRC))
	@mkdir -p $(@D)
	$(call say,AR,$@)
	$(Q)$(LD) -r -o $(@D)/libspike.o $^
	$(Q)objcopy --localize-hidden $(@D)/libspike.o
	@rm -f $@
	$(Q)$(AR) rcs $@ $(@D)/libspike.o

# ---- tests ------------------------------------------------------------------

TEST_BINS := $(foreach v,rel asan tsan,$(addprefix build/$(v)/tests/,$(TEST_UNITS))) \
             $(foreach v,rel asan tsan,build/$(v)/spiked) \
             $(foreach v,rel asan,build/$(v)/spikebench build/$(v)/tests/stall_server build/$(v)/tests/test_hist \
               $(addprefix build/$(v)/tests/,$(BENCH_TESTS))) \
             $(foreach v,rel asan,$(addprefix build/$(v)/examples/,$(EXAMPLES))) \
             $(addprefix build/fuzz/,$(FUZZERS)) build/rel/tests/test_fault build/rel/tests/libfault.so \
             build/rel/tests/test_unsafe build/rel/tests/test_fault_http build/rel/tests/test_backup \
             build/rel/tests/test_failalloc build/rel/tests/libfailalloc.so \
             build/rel/tests/libpowerloss.so build/rel/tests/test_hostile build/rel/tests/hostile_load \
             build/rel/spike-relay build/asan/spike-relay build/rel/tests/test_relay \
             $(addprefix build/rel/bench/micro/,$(MICRO))

# make test: dependencies (apt only for what is missing), then everything
# built with -Werror, one compiler a core (about 110 s from a clean clone
# here on two cores, against 220 s one at a time), and every suite run, one
# at a time. make check is the same.
NPROC := $(shell nproc 2>/dev/null || echo 1)
# One compiler a core, unless the caller gave -j (a -j of ours in its
# sub-make would turn its jobserver off)
JOBS   = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(NPROC))
test: deps-check
	@$(MAKE) --no-print-directory $(JOBS) WERROR=1 test-build
	@$(MAKE) --no-print-directory WERROR=1 test-run

test-build: $(TEST_BINS) build/rel/libspike.so build/rel/dist/libspike.a

check: test

test-run: $(TEST_BINS) build/rel/libspike.so build/rel/dist/libspike.a
	@tests/run.sh

# The ABI of libspike.so against the committed baseline (abi/, see
# docs/embedding.md "ABI policy"): any change but an added function fails.
# Types that spike.h does not define (the engine's insides) are left out.
ABI_BASELINE := abi/$(SONAME).abi
ABI_FLAGS    := --headers-dir include --drop-private-types
abi-check: build/rel/libspike.so
	abidiff --no-added-syms --headers-dir2 include --drop-private-types \
	  --suppressions abi/suppressions.abignore $(ABI_BASELINE) build/rel/libspike.so

# Issue 11 row 6 at full size: a legitimate client's p99 alone and beside
# slow and hostile clients, spiked's RSS before, during, after (about two
# minutes; the functional checks alone are test_hostile in `make test`).
.PHONY: hostile
hostile: deps
	@$(MAKE) --no-print-directory build/rel/spiked build/rel/spikebench build/rel/tests/hostile_load
	@tests/hostile.sh

# `make test` as the README promises it, on a fresh Debian 12 minbase root
# made with debootstrap: root, the network and ten minutes; not in `test`.
.PHONY: test-fresh
test-fresh:
	@tests/fresh-debian.sh

# Write the baseline: when SPIKE_ABI_VERSION moves, or on a release that
# added functions; never to make abi-check pass.
abi-dump: build/rel/libspike.so
	@mkdir -p abi
	abidw $(ABI_FLAGS) --no-corpus-path --no-comp-dir-path --out-file $(ABI_BASELINE) \
	  build/rel/libspike.so
	sed -n 's/^#define SPIKE_VERSION_STRING "\(.*\)"/\1/p' include/spike.h >abi/$(SONAME).version

# A thousand fills of a real tmpfs by the store, each freed again (make
# test runs two); needs root or CAP_SYS_ADMIN to mount, else it says skip.
diskfull: build/rel/tests/test_fault build/rel/tests/libfault.so
	SPIKE_DISKFULL_CYCLES=1000 LD_PRELOAD=build/rel/tests/libfault.so \
	  build/rel/tests/test_fault disk_full_tmpfs

# 10,000 seeds of the engine simulation (make test runs 200).
sim: build/rel/tests/test_sim
	SPIKE_SIM_SEEDS=10000 SPIKE_TEST_TIMEOUT_S=14400 build/rel/tests/test_sim

# An hour of spiked at half its peak with a realistic mix, watched from
# outside: RSS, fds, p99 per second (bench/soak.sh; DURATION=seconds).
soak: build/rel/spiked build/rel/spikebench
	bench/soak.sh $(SOAK_OUT)

# 1,000 kill -9s per case (durable reserves; pays, cancels and expiries;
# ack=memory), then 1,000 power cuts: about an hour on two cores.
soak-crash: build/rel/tests/test_crash build/rel/tests/libpowerloss.so
	SPIKE_CRASH_CYCLES=1000 SPIKE_TEST_TIMEOUT_S=14400 build/rel/tests/test_crash
	SPIKE_CRASH_CYCLES=1000 SPIKE_TEST_TIMEOUT_S=14400 SPIKE_POWERLOSS=1 \
	  LD_PRELOAD=build/rel/tests/libpowerloss.so build/rel/tests/test_crash

# spike-relay's chaos case at length: 20 kills of the relay, 6 of spiked,
# 3 of the broker, with each build of the relay (a few minutes; make test
# runs 4, 2 and 1 with the ASan one).
.PHONY: relay-chaos
relay-chaos: build/rel/spike-relay build/asan/spike-relay build/rel/tests/test_relay build/rel/spiked
	for v in rel asan; do \
	  SPIKE_RELAY_KILLS=20,6,3 SPIKE_RELAY=build/$$v/spike-relay SPIKE_TEST_TIMEOUT_S=1800 \
	    build/rel/tests/test_relay chaos || exit 1; \
	done

# spike-relay's pace against the reference consumer (feed_sqlite) over the
# same feed of 20,000 more operations, no kills: a benchmark, not a test.
.PHONY: bench-relay
bench-relay: build/rel/spike-relay build/rel/tests/test_relay build/rel/spiked build/rel/examples/feed_sqlite
	SPIKE_RELAY_KILLS=0,0,0 SPIKE_RELAY_PACE=20000 SPIKE_TEST_TIMEOUT_S=1800 build/rel/tests/test_relay chaos

# ---- run, bench, install ----------------------------------------------------

# make run RUN_LISTEN=127.0.0.1:9090 when 8080 is taken
RUN_LISTEN ?= 127.0.0.1:8080
run: deps-run
	@$(MAKE) --no-print-directory -s $(JOBS) build/rel/spiked
	@echo
	@echo "spiked on $(RUN_LISTEN) with ./data and a demo event (id 1). Try:"
	@echo "  curl -s $(RUN_LISTEN)/api/v1/events/1"
	@echo "  curl -s -X POST $(RUN_LISTEN)/api/v1/events/1/orders -H 'Content-Type: application/json' -d '{\"user_id\":\"42\"}'"
	@echo "Ctrl-C drains and stops it."
	@echo
	@./build/rel/spiked --listen $(RUN_LISTEN) --data ./data --demo

bench: deps
	@$(MAKE) --no-print-directory $(addprefix build/rel/bench/micro/,$(MICRO))
	@bench/micro/run.sh

bench-http: bench-deps
	@$(MAKE) --no-print-directory build/rel/spiked
	@bench/http.sh

# Durable reserves over HTTP on an empty store and on one of ORDERS orders
# (default 10 million, about 2.7 GiB), alternated: does throughput fall as
# the store grows? (30 s runs; BENCH_DIR, default /var/tmp, a real disk.)
.PHONY: bench-grown
bench-grown: bench-deps
	@$(MAKE) --no-print-directory build/rel/spiked build/rel/bench/micro/bench_writer
	@bench/grown.sh $(or $(BENCH_DIR),/var/tmp)

# spikebench beside wrk, h2load and hey, the same runs (docs/benchmarks.md).
.PHONY: bench-compare
bench-compare: bench-deps
	@$(MAKE) --no-print-directory build/rel/spiked build/rel/spikebench build/rel/tests/stall_server
	@bench/compare.sh

# Reserves through the nginx partition router (deploy/) against 1, 2 and 3
# spiked, with nginx's own fixed body as the reference (docs/scale-out.md).
bench-scaleout: bench-deps
	@$(MAKE) --no-print-directory build/rel/spiked
	@bench/scaleout.sh

# Durable reserves on 1 and 2 spiked (STORES), each its own store and writer, on
# the same cores and disk under one wrk load split between them, with
# nginx's fixed body beside them: the most a partitioned store could give
# here (docs/design.md, "Why one store"). Stores in BENCH_DIR (/var/tmp).
bench-stores: bench-deps
	@$(MAKE) --no-print-directory build/rel/spiked
	@TMPDIR=$(or $(BENCH_DIR),/var/tmp) bench/stores.sh

# A hot backup of a store of ORDERS orders (default 10 million, about
# 2.7 GiB) while spiked serves reserves: duration, size, reserve latency.
bench-backup:
	@$(MAKE) --no-print-directory build/rel/spiked build/rel/spikebench build/rel/bench/micro/bench_writer
	@bench/backup.sh

pc_subst = sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	  -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(SPIKE_VERSION)|'

# install-lib alone is the library and its headers (what the Debian
# packages hold); install adds spiked, its unit and config.
install: install-lib install-spiked
install-lib: lib
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 build/rel/dist/libspike.a $(DESTDIR)$(LIBDIR)/
	install -m 644 build/rel/libspike.so $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libspike.so
	install -m 644 include/spike.h include/spike_uv.h $(DESTDIR)$(INCLUDEDIR)/
	$(pc_subst) spike.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/spike.pc
	$(pc_subst) spike-uv.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/spike-uv.pc
	@# into the running system, as root: refresh the loader's cache, or a
	@# program linked against the new library does not find it
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  ldconfig; fi

uninstall: uninstall-lib uninstall-spiked
uninstall-lib:
	rm -f $(DESTDIR)$(LIBDIR)/libspike.a $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/libspike.so $(DESTDIR)$(INCLUDEDIR)/spike.h \
	  $(DESTDIR)$(INCLUDEDIR)/spike_uv.h $(DESTDIR)$(PKGCONFIGDIR)/spike.pc \
	  $(DESTDIR)$(PKGCONFIGDIR)/spike-uv.pc
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  ldconfig; fi

# Debian packages libspike$(SPIKE_ABI) and libspike-dev, built by
# dpkg-buildpackage from a copy of the tracked tree with packaging/debian as
# debian/, checked, and left in build/deb/ (about a minute; not in make
# test). deb-deps installs what dpkg-buildpackage checks for (the
# Build-Depends, build-essential) and no test tool: a packager needs no
# browser or broker to build the packages.
deb: deb-deps
	@tests/build-deb.sh build/deb

deb-deps:
	@$(call install_missing,deb-deps,$(DEB_RUN) abigail-tools $(DEB_PACK))

# spiked, its systemd unit and a config file (kept if one is there).
.PHONY: install-lib uninstall-lib install-spiked
install-spiked: build/rel/spiked
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/spike
	install -m 755 build/rel/spiked $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' dist/spiked.service.in \
	  > $(DESTDIR)$(UNITDIR)/spiked.service
	[ -e $(DESTDIR)$(SYSCONFDIR)/spike/spiked.conf ] || \
	  install -m 644 dist/spiked.conf $(DESTDIR)$(SYSCONFDIR)/spike/spiked.conf

# The config file goes only as installed; an edited one is the operator's.
.PHONY: uninstall-spiked
uninstall-spiked:
	rm -f $(DESTDIR)$(PREFIX)/bin/spiked $(DESTDIR)$(UNITDIR)/spiked.service
	@conf=$(DESTDIR)$(SYSCONFDIR)/spike/spiked.conf; \
	if [ -f $$conf ] && cmp -s $$conf dist/spiked.conf; then \
	  rm -f $$conf; rmdir $(DESTDIR)$(SYSCONFDIR)/spike 2>/dev/null || true; \
	elif [ -f $$conf ]; then echo "uninstall: kept $$conf (edited)"; fi

format:
	clang-format -i include/*.h common/*.[ch] relay/*.[ch] engine/*.[ch] store/*.[ch] net/*.[ch] tests/*.[ch] bench/*.[ch] bench/micro/*.c examples/*.c 2>/dev/null || true

clean:
	rm -rf build

-include $(shell find build -path build/deb -prune -o -name '*.d' -type f -print 2>/dev/null)

# make print-LIBDIR: a variable's value, for scripts (tests/test_exports.sh).
print-%:
	@echo '$($*)'
