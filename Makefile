# The two commands that matter: `make run` starts Buzzer on embedded engines;
# `make test` runs every test, integration included.
GO      ?= go
# pkcs11 builds the PKCS#11 (HSM) signer, tested against SoftHSM2.
TAGS    ?= pkcs11
TIMEOUT ?= 14m

.PHONY: run test vet build fuzz clean

run:
	$(GO) run ./cmd/buzzer serve

test: vet
	$(GO) test -race -tags '$(TAGS)' -count=1 -timeout $(TIMEOUT) ./...
# The wallet bank test at the issue's full size (20,000 operations, 32
# clients) on PostgreSQL and SQLite, without -race, which would make it too
# slow (the race suite above runs it at 4,000). About 1.5 min on 2 cores.
	BUZZER_BANK_FULL=1 $(GO) test -tags '$(TAGS)' -count=1 -timeout 10m -run '^TestWalletBank$$' ./postgres ./sqlite

vet:
	$(GO) vet -tags '$(TAGS)' ./...

build:
	$(GO) build -o bin/buzzer ./cmd/buzzer

# Longer fuzzing of one target: make fuzz PKG=./auth FUZZ=FuzzVerify TIME=60s
fuzz:
	$(GO) test -run '^$$' -fuzz '$(FUZZ)' -fuzztime $(or $(TIME),30s) $(PKG)

clean:
	rm -rf bin data
