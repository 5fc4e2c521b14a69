# spike -- one plain Makefile.
#
#   make run      build and start spiked on 127.0.0.1:8080 with ./data and a demo event
#   make test     build everything (release, ASan+UBSan, TSan) and run every test
#   make bench    micro and end-to-end engine benchmarks (not tests)
#   make deps     install the Debian packages this needs (run by test and run)
#   make install  libspike.a, libspike.so, spike.h and spike.pc under PREFIX
#
# Build outputs go under build/<variant>/: rel (-O2), asan (ASan+UBSan), tsan.

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=

PKGS      := lmdb libuv msgpack libxxhash libjwt
DEB_LIBS  := liblmdb-dev libuv1-dev node-llhttp libmsgpack-dev libxxhash-dev libjsmn-dev libjwt-dev pkg-config
# libclang-rt-dev: clang's sanitizer and libFuzzer runtimes, only a
# Recommends of clang, so --no-install-recommends leaves it out. curl:
# tests/test_api_doc.sh and the lines `make run` prints.
DEB_TOOLS := valgrind clang libclang-rt-dev curl
DEB_BENCH := wrk nginx-light
LLHTTP_DIR     := /usr/share/llhttp
LLHTTP_INCLUDE := /usr/share/include/llhttp

# Evaluated lazily: `make deps` may have just installed pkg-config's files.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

WARN     := -std=gnu11 -Wall -Wextra -Wpedantic -Werror
# Each folder sees only the headers of the layers below it, so a wrong arrow
# fails to compile: net -> spike.h -> engine -> store, common beside all.
INC_common   := -iquote include -iquote common
INC_store    := -iquote include -iquote store
INC_engine   := -iquote include -iquote common -iquote engine -iquote store
INC_net      := -iquote include -iquote common -iquote net -I$(LLHTTP_INCLUDE)
INC_examples := -iquote include -iquote net
INC_bench    := -iquote include -iquote bench -I$(LLHTTP_INCLUDE)
INC_tests    := -iquote include -iquote common -iquote engine -iquote store -iquote net \
                -iquote bench -iquote tests -I$(LLHTTP_INCLUDE)
INCLUDES     := $(INC_tests)
# bench/micro measures the engine from inside.
inc_for = $(if $(filter bench/micro/%,$(1)),$(INC_tests),$(INC_$(firstword $(subst /, ,$(1)))))
BASE_CFLAGS = $(WARN) -g -fno-omit-frame-pointer -fPIC $(PKG_CFLAGS) $(CFLAGS)

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
BENCH_SRC  := bench/spikebench.c bench/hist.c bench/plot.c
TEST_UNITS := test_ring test_slab test_limit test_ids test_wheel test_codec test_order test_misuse \
              test_memory_ack test_clock test_migrate test_powerloss test_sim test_races \
              test_body test_engine test_lifecycle test_stress test_crash test_http test_spikebench
EXAMPLES   := embed
MICRO      := bench_ring bench_reserve bench_writer bench_lifecycle

.PHONY: all deps bench-deps test check run bench bench-http install clean format powerloss \
        soak-crash sim

all: build/rel/libspike.a build/rel/dist/libspike.a build/rel/libspike.so build/rel/spiked build/rel/spikebench \
     $(addprefix build/rel/examples/,$(EXAMPLES))

# ---- dependencies -----------------------------------------------------------

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT   = DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends

# A package counts as present only when dpkg says it is installed: clang on
# its own, without its runtimes, cannot link the fuzzers.
deps:
	@missing=""; \
	for p in $(DEB_LIBS) $(DEB_TOOLS); do \
	  [ "$$(dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null)" = installed ] || \
	    missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(APT) $$missing || { $(SUDO) apt-get update && $(APT) $$missing; }; \
	fi

bench-deps: deps
	@command -v wrk >/dev/null && command -v nginx >/dev/null || \
	{ $(APT) $(DEB_BENCH) || { $(SUDO) apt-get update && $(APT) $(DEB_BENCH); }; }

# ---- objects, per variant ---------------------------------------------------

define variant
build/$(1)/%.o: %.c
	@mkdir -p $$(@D)
	@echo "  CC    $(1)/$$<"
	@$$(CC) $$(BASE_CFLAGS) $$(call inc_for,$$<) $$(OPT_$(1)) -MMD -MP -c $$< -o $$@

build/$(1)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $$(@D)
	@echo "  CC    $(1)/llhttp/$$(<F)"
	@$$(CC) -std=gnu11 -g -fPIC -w -I$(LLHTTP_INCLUDE) $$(OPT_$(1)) -c $$< -o $$@

# libspike's own objects export only what spike.h marks SPIKE_EXTERN.
$(patsubst %.c,build/$(1)/%.o,$(LIB_SRC)): BASE_CFLAGS += -fvisibility=hidden

# The internal archive: every module's symbols stay global, for spiked, the
# tests and the micro-benchmarks, which call the modules directly.
build/$(1)/libspike.a: $(patsubst %.c,build/$(1)/%.o,$(LIB_SRC))
	@rm -f $$@
	@echo "  AR    $$@"
	@ar rcs $$@ $$^

build/$(1)/libspiked.a: $(patsubst %.c,build/$(1)/%.o,$(NET_SRC)) $(addprefix build/$(1)/llhttp/,$(LLHTTP_SRC:.c=.o))
	@rm -f $$@
	@echo "  AR    $$@"
	@ar rcs $$@ $$^

build/$(1)/tests/%: build/$(1)/tests/%.o build/$(1)/tests/test.o build/$(1)/tests/http_client.o \
                    build/$(1)/libspiked.a build/$(1)/libspike.a
	@echo "  LD    $$@"
	@$$(CC) $$(LD_$(1)) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/spiked: build/$(1)/net/main.o build/$(1)/libspiked.a build/$(1)/libspike.a
	@echo "  LD    $$@"
	@$$(CC) $$(LD_$(1)) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/spikebench: $(patsubst %.c,build/$(1)/%.o,$(BENCH_SRC)) build/$(1)/libspiked.a build/$(1)/libspike.a
	@echo "  LD    $$@"
	@$$(CC) $$(LD_$(1)) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/tests/test_hist: build/$(1)/bench/hist.o build/$(1)/bench/plot.o
build/$(1)/tests/test_hostile build/$(1)/tests/hostile_load: build/$(1)/tests/hostile.o
build/$(1)/tests/stall_server: build/$(1)/tests/stall_server.o
	@echo "  LD    $$@"
	@$$(CC) $$(LD_$(1)) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/examples/%: build/$(1)/examples/%.o build/$(1)/net/spike_uv.o build/$(1)/libspike.a
	@echo "  LD    $$@"
	@$$(CC) $$(LD_$(1)) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/bench/micro/%: build/$(1)/bench/micro/%.o build/$(1)/libspike.a
	@echo "  LD    $$@"
	@$$(CC) $$(LD_$(1)) -o $$@ $$^ $$(PKG_LIBS)
endef
$(foreach v,rel asan tsan,$(eval $(call variant,$(v))))

.SECONDARY:

# libFuzzer targets: clang, ASan+UBSan, every source compiled in.
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
build/fuzz/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(@D)
	@clang -g -O1 -w -fsanitize=address,undefined -I$(LLHTTP_INCLUDE) -c $< -o $@

build/fuzz/%: tests/%.c $(NET_SRC) $(LIB_SRC) $(addprefix build/fuzz/llhttp/,$(LLHTTP_SRC:.c=.o))
	@mkdir -p $(@D)
	@echo "  FUZZ  $@"
	@clang $(WARN) -g -O1 $(INCLUDES) $(PKG_CFLAGS) $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS)

# The LD_PRELOAD shim test_crash's power-loss run is under.
build/rel/tests/libpowerloss.so: tests/powerloss.c
	@mkdir -p $(@D)
	@echo "  SO    $@"
	@$(CC) $(WARN) -g -O2 -shared -fPIC -o $@ $< -ldl -lpthread

# The LD_PRELOAD fault injector test_fault runs under.
build/rel/tests/libfault.so: tests/fault.c
	@mkdir -p $(@D)
	@echo "  SO    $@"
	@$(CC) $(WARN) -g -O2 -shared -fPIC -o $@ $< -ldl

build/rel/libspike.so: $(patsubst %.c,build/rel/%.o,$(LIB_SRC))
	$(CC) -shared -Wl,-soname,libspike.so.0 -o $@ $^ $(PKG_LIBS)

# The archive `make install` installs: the library linked into one object
# whose hidden symbols are made local, so that a program linking it
# statically sees only spike_* and cannot collide with a module's name.
build/rel/dist/libspike.a: $(patsubst %.c,build/rel/%.o,$(LIB_SRC))
	@mkdir -p $(@D)
	@echo "  AR    $@"
	@$(LD) -r -o $(@D)/libspike.o $^
	@objcopy --localize-hidden $(@D)/libspike.o
	@rm -f $@
	@ar rcs $@ $(@D)/libspike.o

# ---- tests ------------------------------------------------------------------

TEST_BINS := $(foreach v,rel asan tsan,$(addprefix build/$(v)/tests/,$(TEST_UNITS))) \
             $(foreach v,rel asan tsan,build/$(v)/spiked) \
             $(foreach v,rel asan,build/$(v)/spikebench build/$(v)/tests/stall_server build/$(v)/tests/test_hist) \
             $(foreach v,rel asan,$(addprefix build/$(v)/examples/,$(EXAMPLES))) \
             $(addprefix build/fuzz/,$(FUZZERS)) build/rel/tests/test_fault build/rel/tests/libfault.so \
             build/rel/tests/libpowerloss.so build/rel/tests/test_hostile build/rel/tests/hostile_load

test: deps
	@$(MAKE) --no-print-directory check

check: $(TEST_BINS) build/rel/libspike.so build/rel/dist/libspike.a
	@tests/run.sh

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

# The long forms of the fault tests (issue 11; docs/reliability.md).
powerloss: build/rel/tests/test_powerloss build/rel/tests/libpowerloss.so
	SPIKE_POWERLOSS_LONG=1 LD_PRELOAD=build/rel/tests/libpowerloss.so build/rel/tests/test_powerloss

# 10,000 seeds of the engine simulation (make test runs 200).
sim: build/rel/tests/test_sim
	SPIKE_SIM_SEEDS=10000 SPIKE_TEST_TIMEOUT_S=14400 build/rel/tests/test_sim

# 1,000 kill -9s per case (durable reserves; pays, cancels and expiries;
# ack=memory), then 1,000 power cuts: about an hour on two cores.
soak-crash: build/rel/tests/test_crash build/rel/tests/libpowerloss.so
	SPIKE_CRASH_CYCLES=1000 SPIKE_TEST_TIMEOUT_S=14400 build/rel/tests/test_crash
	SPIKE_CRASH_CYCLES=1000 SPIKE_TEST_TIMEOUT_S=14400 SPIKE_POWERLOSS=1 \
	  LD_PRELOAD=build/rel/tests/libpowerloss.so build/rel/tests/test_crash

# ---- run, bench, install ----------------------------------------------------

run: deps
	@$(MAKE) --no-print-directory build/rel/spiked
	@echo
	@echo "spiked on 127.0.0.1:8080 with ./data and a demo event (id 1). Try:"
	@echo "  curl -s localhost:8080/api/v1/events/1"
	@echo "  curl -s -X POST localhost:8080/api/v1/events/1/orders -H 'Content-Type: application/json' -d '{\"user_id\":\"42\"}'"
	@echo "Ctrl-C drains and stops it."
	@echo
	@./build/rel/spiked --listen 127.0.0.1:8080 --data ./data --demo

bench: deps
	@$(MAKE) --no-print-directory $(addprefix build/rel/bench/micro/,$(MICRO))
	@bench/micro/run.sh

bench-http: bench-deps
	@$(MAKE) --no-print-directory build/rel/spiked
	@bench/http.sh

install: build/rel/dist/libspike.a build/rel/libspike.so
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 build/rel/dist/libspike.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 build/rel/libspike.so $(DESTDIR)$(PREFIX)/lib/libspike.so.0
	ln -sf libspike.so.0 $(DESTDIR)$(PREFIX)/lib/libspike.so
	install -m 644 include/spike.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/.*SPIKE_VERSION_STRING "\(.*\)"/\1/p' include/spike.h)|' \
	  spike.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/spike.pc

format:
	clang-format -i include/*.h common/*.[ch] engine/*.[ch] store/*.[ch] net/*.[ch] tests/*.[ch] bench/*.[ch] bench/micro/*.c examples/*.c 2>/dev/null || true

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
