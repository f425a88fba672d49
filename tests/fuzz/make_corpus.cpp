// Writes the fuzzer's seed corpus: one file per sample of sample_messages.hpp, each a complete
// valid frame (header, archive, payload) named valid-NN-<sample>.bin.
//
//   make_corpus tests/fuzz/corpus
//
// replay_corpus requires every valid-* file to be accepted: rerun this after a change to the
// wire format and commit the new files.
#include "sample_messages.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  int written = 0;
  bool ok = true;
  dx::fuzz::for_each_sample([&](const char* name, const auto& msg, std::shared_ptr<const std::string> payload) {
    const dx::wire::frame f = dx::wire::encode(msg, std::move(payload));
    char file[128];
    std::snprintf(file, sizeof file, "valid-%02u-%s.bin", static_cast<unsigned>(f.type), name);
    const std::string bytes = dx::wire::frame_bytes(f);
    std::ofstream out(dir / file, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", (dir / file).c_str());
      ok = false;
    }
    ++written;
  });
  std::printf("wrote %d frames to %s\n", written, dir.c_str());
  return ok ? 0 : 1;
}
