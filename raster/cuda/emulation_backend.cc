// The emulation backend: maps and ego layers in host memory, batches run by emulateBatch.
#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.hpp"
#include "batch_prep.hpp"
#include "emulation.hpp"

namespace rasterd {
namespace gpu {
namespace {

/** Shared-memory budget of one CUDA block [bytes], so that the emulation picks the GPU's band height. */
constexpr size_t kDefaultBandBudget = 48 * 1024;

class EmulationBackend final : public Backend {
 public:
  const char* name() const override { return "emulation"; }

  int registerMap(const double* coords, size_t vertexCount) override {
    const int id = nextMapId_++;
    maps_[id].assign(coords, coords + 2 * vertexCount);
    return id;
  }

  void releaseMap(int id) override { maps_.erase(id); }

  MapRef map(int id) const override {
    const auto found = maps_.find(id);
    if (found == maps_.end()) throw std::out_of_range("map id " + std::to_string(id) + " is not registered; call registerMap first");
    return MapRef{found->second.data(), found->second.size() / 2};
  }

  const uint8_t* egoPlane(const SceneParams& params) override {
    std::vector<uint8_t>& plane = egoPlanes_[egoKey(params)];
    if (plane.empty()) plane = egoPlaneBytes(params);
    return plane.data();
  }

  int bandRows(int rows, int cols) const override {
    if (bandRowsOverride_ > 0) return bandRowsOverride_ < rows ? bandRowsOverride_ : rows;
    return bandRowsFor(rows, cols, kDefaultBandBudget);
  }

  void setBandRowsOverride(int rows) override { bandRowsOverride_ = rows > 0 ? rows : 0; }

  void run(const HostBatch& batch, float* hostOut, BatchTimings& timings) override {
    const auto started = std::chrono::steady_clock::now();
    float* out = hostOut;
    if (out == nullptr) {
      output_.resize(batch.scenes.size() * static_cast<size_t>(batch.rows) * batch.cols * 4);
      out = output_.data();
    }
    emulateBatch(batch, bandRows(batch.rows, batch.cols), buffers_, out);
    lastOutput_ = out;
    timings.kernelMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  }

  uint64_t outputAddress() const override { return reinterpret_cast<uint64_t>(lastOutput_); }

  void releaseAll() override {
    maps_.clear();
    egoPlanes_.clear();
    output_ = std::vector<float>();
    buffers_ = EmulationBuffers();
    lastOutput_ = nullptr;
  }

 private:
  int bandRowsOverride_ = 0;
  int nextMapId_ = 1;
  std::map<int, std::vector<double>> maps_;
  std::map<std::array<double, 7>, std::vector<uint8_t>> egoPlanes_;
  EmulationBuffers buffers_;
  std::vector<float> output_;
  const float* lastOutput_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> createEmulationBackend() { return std::make_unique<EmulationBackend>(); }

}  // namespace gpu
}  // namespace rasterd
