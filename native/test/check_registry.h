#pragma once
/* Checks as registered cases, shared by the native check programs: each case reports its own lines ("ok" or
 * "FAIL", a name, an error and its tolerance), so adding one edits no count anywhere. A case names the backend
 * ops (backend.h's CX_BACKEND_OPS) it checks; run_cases can require that every op of the list has one. */
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "../src/model/backend.h"

namespace checks {

inline int passed = 0, failed = 0;

inline void report(const std::string& name, double err, double tol) {
  const bool ok = err <= tol && !std::isnan(err);
  (ok ? passed : failed)++;
  std::printf("%s %-44s max relative error %.3e (tolerance %.0e)\n", ok ? "ok  " : "FAIL", name.c_str(), err, tol);
}

struct Case {
  const char* name;
  std::vector<cx::Op> covers;
  void (*run)();
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

struct Registration {
  Registration(const char* name, std::vector<cx::Op> covers, void (*run)()) { registry().push_back({name, std::move(covers), run}); }
};

/* Runs every registered case in registration order (a case that throws is one failure, and the rest still
 * run); with require_coverage, each op of CX_BACKEND_OPS that no case covers is a failure too. Prints the
 * closing "N passed, N failed" line and returns the exit status. */
inline int run_cases(bool require_coverage) {
  for (const Case& c : registry()) {
    try {
      c.run();
    } catch (const std::exception& e) {
      std::printf("FAIL %s stopped: %s\n", c.name, e.what());
      failed++;
    }
  }
  if (require_coverage)
    for (int op = 0; op < cx::kOpCount; op++) {
      bool covered = false;
      for (const Case& c : registry())
        for (cx::Op o : c.covers) covered = covered || (int)o == op;
      if (!covered) {
        std::printf("FAIL op %s has no registered check\n", cx::kOpNames[op]);
        failed++;
      }
    }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace checks

/* CX_CHECK(id, "name", cx::Op::a, cx::Op::b) { body }: a case, registered before main runs. */
#define CX_CHECK(id, name, ...)                                                \
  static void id();                                                            \
  static const checks::Registration id##_registration(name, {__VA_ARGS__}, id); \
  static void id()
