# Builds and installs the C library: `make install PREFIX=/usr/local` (DESTDIR for staging).
# Installs libpastry.so.VERSION with its SONAME libpastry.so.MAJOR and the links to it,
# libpastry.a, include/pastry.h, and pkg-config files: `pastry` (shared) and
# `pastry-static` (the archive). The installed libraries carry no debug information.
# Everything is built by cargo; this file only copies. Linux.

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CARGO ?= cargo
# `release`, or `debug` for a quick build (tests).
PROFILE ?= release
TARGET_DIR ?= target

VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
BUILT := $(TARGET_DIR)/$(PROFILE)
PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)
# The system libraries Rust's standard library needs when linked statically.
NATIVE_LIBS := -lpthread -ldl -lm -lrt -lutil

.PHONY: all build install uninstall

all: build

build:
	$(CARGO) build --lib $(PROFILE_FLAG) --target-dir $(TARGET_DIR)

install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 0755 $(BUILT)/libpastry.so $(DESTDIR)$(LIBDIR)/libpastry.so.$(VERSION)
	strip --strip-debug $(DESTDIR)$(LIBDIR)/libpastry.so.$(VERSION)
	ln -sf libpastry.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libpastry.so.$(MAJOR)
	ln -sf libpastry.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libpastry.so
	install -m 0644 $(BUILT)/libpastry.a $(DESTDIR)$(LIBDIR)/libpastry.a
	strip --strip-debug $(DESTDIR)$(LIBDIR)/libpastry.a
	install -m 0644 include/pastry.h $(DESTDIR)$(INCLUDEDIR)/pastry.h
	for pc in pastry pastry-static; do \
	    sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	        -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	        -e 's|@NATIVE_LIBS@|$(NATIVE_LIBS)|' \
	        packaging/$$pc.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/$$pc.pc || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libpastry.so $(DESTDIR)$(LIBDIR)/libpastry.so.$(MAJOR) \
	    $(DESTDIR)$(LIBDIR)/libpastry.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libpastry.a \
	    $(DESTDIR)$(INCLUDEDIR)/pastry.h $(DESTDIR)$(PKGCONFIGDIR)/pastry.pc \
	    $(DESTDIR)$(PKGCONFIGDIR)/pastry-static.pc
