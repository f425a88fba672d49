# Applies DX_SANITIZE to every target created after this point in dx's own tree. Sanitizers must
# cover the library, the tests and the examples alike, so directory scope is the right level here;
# it never leaks into a parent project because dx only includes this file for its own tree.
# -g1 (line tables only) is what a sanitizer's report needs to name files and lines; full debug
# information would make the build and its links much slower for nothing the reports use.
if(DX_SANITIZE STREQUAL "thread")
  # -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence; dx's fences order
  # wake-up checks (liveness), while data hand-offs use release/acquire operations TSan sees.
  add_compile_options(-fsanitize=thread -g1 -O1 -Wno-tsan)
  add_link_options(-fsanitize=thread)
elseif(DX_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g1 -O1)
  add_link_options(-fsanitize=address,undefined)
elseif(NOT DX_SANITIZE STREQUAL "")
  message(FATAL_ERROR "DX_SANITIZE must be '', 'thread' or 'address', not '${DX_SANITIZE}'")
endif()
