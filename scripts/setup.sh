#!/usr/bin/env bash
# Installs the system packages the tests need (idempotent): a software Vulkan driver so
# wgpu finds an adapter without a GPU, Khronos' SPIR-V and GLSL validators for the
# shader translation test, and Chromium for the browser test.
set -euo pipefail
need=()
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || need+=(mesa-vulkan-drivers libvulkan1)
command -v spirv-val >/dev/null 2>&1 || need+=(spirv-tools)
command -v glslangValidator >/dev/null 2>&1 || need+=(glslang-tools)
command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: missing ${need[*]} (install them, or run as root on Debian)" >&2
  fi
fi
