#!/usr/bin/env bash
# Installs Open MPI from Debian's packages when mpirun is missing, for the
# data-parallel test (Tests/LoraTrainTests/MPITests.swift: mpirun -np 2).
# lora-gpu itself opens libmpi with dlopen only under mpirun, so only the
# runtime is needed (openmpi-bin pulls libopenmpi3; no headers).
set -euo pipefail
command -v mpirun >/dev/null && exit 0
echo "setup: installing openmpi-bin (for the MPI test)"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openmpi-bin
