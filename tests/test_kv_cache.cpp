// runtime::KvCache on its own: the cell bookkeeping that every backend's KV
// storage mirrors. apply() is its only mutator, so these tables drive it and
// check the state after each op, including that a rejected op changes nothing.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/kv_cache.h"

namespace quarrel::runtime {
namespace {

using Kind = KvCache::Op::Kind;

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<int32_t> tokens_of(const KvCache& kv, int32_t seq) {
  auto s = kv.tokens(seq);
  return {s.begin(), s.end()};
}

TEST(KvCache, RejectsEmptyGeometry) {
  const std::pair<int32_t, int32_t> geometries[] = {{0, 8}, {1, 0}, {-1, 8}, {2, -4}};
  for (const auto& g : geometries) {
    EXPECT_NE(error_of([&] { KvCache kv(g.first, g.second); }).find("kv cache"), std::string::npos)
        << g.first << "x" << g.second;
  }
}

TEST(KvCache, StartsEmpty) {
  KvCache kv(3, 16);
  EXPECT_EQ(kv.n_seq(), 3);
  EXPECT_EQ(kv.n_ctx(), 16);
  for (int32_t s = 0; s < 3; ++s) {
    EXPECT_EQ(kv.n_past(s), 0);
    EXPECT_TRUE(kv.tokens(s).empty());
  }
}

// One op and what must hold after it: the expected slot contents, or an error
// substring (and then the slots must be as before the op).
struct Step {
  KvCache::Op::Kind kind;
  int32_t seq;
  std::vector<int32_t> tokens;  // Append
  int32_t n_keep;               // Truncate
  std::vector<std::vector<int32_t>> after;  // every slot, when the op succeeds
  std::string error;                        // non-empty: the op must throw this
};

TEST(KvCache, OpTable) {
  const std::vector<Step> steps = {
      {Kind::Append, 0, {1, 2, 3}, 0, {{1, 2, 3}, {}}, ""},
      {Kind::Append, 1, {9}, 0, {{1, 2, 3}, {9}}, ""},
      {Kind::Append, 0, {}, 0, {{1, 2, 3}, {9}}, ""},  // an empty append is a no-op
      {Kind::Append, 0, {4, 5, 6}, 0, {{1, 2, 3, 4, 5, 6}}, "context is full"},  // 3 + 3 > 5
      {Kind::Append, 0, {4, 5}, 0, {{1, 2, 3, 4, 5}, {9}}, ""},  // exactly full
      {Kind::Append, 0, {6}, 0, {}, "context is full"},
      {Kind::Truncate, 0, {}, 6, {}, "cannot keep 6 of 5"},
      {Kind::Truncate, 0, {}, -1, {}, "cannot keep -1 of 5"},
      {Kind::Truncate, 0, {}, 5, {{1, 2, 3, 4, 5}, {9}}, ""},  // keep all: no-op
      {Kind::Truncate, 0, {}, 2, {{1, 2}, {9}}, ""},
      {Kind::Append, 0, {7, 8}, 0, {{1, 2, 7, 8}, {9}}, ""},  // appends after the kept prefix
      {Kind::Clear, 1, {}, 0, {{1, 2, 7, 8}, {}}, ""},
      {Kind::Append, 2, {1}, 0, {}, "sequence 2 is out of range [0, 2)"},
      {Kind::Clear, -1, {}, 0, {}, "sequence -1 is out of range"},
      {Kind::Truncate, 0, {}, 0, {{}, {}}, ""},
      {Kind::Append, 1, {5, 4, 3, 2, 1}, 0, {{}, {5, 4, 3, 2, 1}}, ""},
  };
  KvCache kv(2, 5);
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& st = steps[i];
    SCOPED_TRACE("step " + std::to_string(i));
    const std::vector<std::vector<int32_t>> before = {tokens_of(kv, 0), tokens_of(kv, 1)};
    const std::string err = error_of([&] {
      kv.apply({.kind = st.kind, .seq = st.seq, .tokens = st.tokens, .n_keep = st.n_keep});
    });
    if (!st.error.empty()) {
      EXPECT_NE(err.find(st.error), std::string::npos) << "got: '" << err << "'";
      EXPECT_EQ(tokens_of(kv, 0), before[0]);
      EXPECT_EQ(tokens_of(kv, 1), before[1]);
      continue;
    }
    ASSERT_EQ(err, "");
    for (int32_t s = 0; s < 2; ++s) {
      EXPECT_EQ(tokens_of(kv, s), st.after[s]) << "slot " << s;
      EXPECT_EQ(kv.n_past(s), static_cast<int32_t>(st.after[s].size()));
    }
  }
}

TEST(KvCache, CommonPrefix) {
  KvCache kv(2, 8);
  const std::vector<int32_t> cached = {1, 2, 3, 4};
  kv.apply({.kind = Kind::Append, .seq = 0, .tokens = cached});
  struct Case {
    std::vector<int32_t> query;
    int32_t want;
  };
  const Case cases[] = {
      {{}, 0}, {{1}, 1}, {{1, 2, 3, 4}, 4}, {{1, 2, 3, 4, 5, 6}, 4}, {{1, 2, 9, 4}, 2}, {{7, 2, 3}, 0}, {{1, 2, 3}, 3},
  };
  for (const Case& c : cases) EXPECT_EQ(kv.common_prefix(0, c.query), c.want) << testing::PrintToString(c.query);
  EXPECT_EQ(kv.common_prefix(1, cached), 0);  // the other slot is empty
}

TEST(KvCache, QueriesCheckTheSlot) {
  const KvCache kv(1, 4);
  const std::vector<int32_t> q = {1};
  EXPECT_NE(error_of([&] { kv.n_past(1); }).find("sequence 1"), std::string::npos);
  EXPECT_NE(error_of([&] { kv.tokens(-2); }).find("sequence -2"), std::string::npos);
  EXPECT_NE(error_of([&] { kv.common_prefix(7, q); }).find("sequence 7"), std::string::npos);
}

TEST(KvCache, SlotsAreIndependentAtCapacity) {
  KvCache kv(4, 3);
  const std::vector<int32_t> full = {1, 2, 3};
  for (int32_t s = 0; s < 4; ++s) kv.apply({.kind = Kind::Append, .seq = s, .tokens = full});
  for (int32_t s = 0; s < 4; ++s) EXPECT_EQ(kv.n_past(s), 3);
  kv.apply({.kind = Kind::Clear, .seq = 2});
  EXPECT_EQ(kv.n_past(2), 0);
  EXPECT_EQ(kv.n_past(1), 3);
  EXPECT_EQ(kv.n_past(3), 3);
  const std::vector<int32_t> one = {4};
  EXPECT_NE(error_of([&] { kv.apply({.kind = Kind::Append, .seq = 3, .tokens = one}); }).find("context is full"),
            std::string::npos);
  EXPECT_NO_THROW(kv.apply({.kind = Kind::Append, .seq = 2, .tokens = one}));
  EXPECT_EQ(tokens_of(kv, 2), one);
}

}  // namespace
}  // namespace quarrel::runtime
