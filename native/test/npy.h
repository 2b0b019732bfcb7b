#pragma once
/* Reads a shard's tokens (.npy, version 1.0, '<u4', C order — the format src/shards writes) for the GPU checks. */
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

inline std::vector<int32_t> read_npy_tokens(const std::string& path, std::string* err) {
  std::ifstream in(path, std::ios::binary);
  char magic[10];
  if (!in.read(magic, 10) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    *err = path + ": not a .npy file";
    return {};
  }
  const size_t header_len = (size_t)(unsigned char)magic[8] | ((size_t)(unsigned char)magic[9] << 8);
  std::string header(header_len, '\0');
  in.read(&header[0], (std::streamsize)header_len);
  if (header.find("'<u4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos) {
    *err = path + ": expected little-endian uint32 tokens in C order, got " + header;
    return {};
  }
  std::vector<int32_t> tokens;
  uint32_t buf[4096];
  while (in.read(reinterpret_cast<char*>(buf), sizeof buf) || in.gcount() > 0) {
    const size_t n = (size_t)in.gcount() / 4;
    for (size_t i = 0; i < n; i++) tokens.push_back((int32_t)buf[i]);
  }
  return tokens;
}
