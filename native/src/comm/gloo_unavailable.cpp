/* Built without gloo (libgloo-dev was not found when the addon was compiled). */
#include "communicator.h"

namespace cx {

Communicator* create_gloo_communicator(const CommOptions&, std::string* why) {
  *why = "this addon was built without gloo; install libgloo-dev (Debian/Ubuntu) and rebuild it (npm rebuild chuxin-data)";
  return nullptr;
}

}  // namespace cx
