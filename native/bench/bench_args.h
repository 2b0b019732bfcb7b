#pragma once
/* Command-line lists of the GPU programs: "1,2,4" -> {1, 2, 4}. */
#include <cstdlib>
#include <vector>

inline std::vector<int> parse_list(const char* text) {
  std::vector<int> out;
  for (const char* p = text; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') p++;
    if (*p == ',') p++;
  }
  return out;
}
