// The server's parts below HTTP: the request parser as a table of bodies and
// verdicts, the stop-string matcher as a table of streams, and the scheduler
// on the demo model (batched greedy text equals solo greedy text; a cached
// prefix changes nothing but the work done).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "model/model.h"
#include "runtime/backend.h"
#include "server/api_error.h"
#include "server/request.h"
#include "server/scheduler.h"
#include "server/stop_matcher.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace quarrel::server {
namespace {

struct ParseCase {
  std::string body;
  Endpoint endpoint;
  std::string param;  // the 400's param; "ok" = accepted
};

TEST(ServerRequest, AcceptsOrRejectsNamingTheField) {
  const ParseCase cases[] = {
      {R"({"prompt": "x"})", Endpoint::Completions, "ok"},
      {R"({"prompt": "x", "unknown": [1, {"a": null}], "user": "u", "metadata": {}})", Endpoint::Completions, "ok"},
      {R"({"prompt": "x", "max_tokens": null, "stop": null, "seed": null, "n": null})", Endpoint::Completions, "ok"},
      {R"({"prompt": ["x"]})", Endpoint::Completions, "ok"},
      {R"({"prompt": [1, 2, 3]})", Endpoint::Completions, "ok"},
      {R"({"prompt": [[1, 2, 3]]})", Endpoint::Completions, "ok"},
      {R"({"prompt": "x", "max_tokens": 5.0, "n": 1, "best_of": 1, "echo": false})", Endpoint::Completions, "ok"},
      {R"({"prompt": "x", "seed": -1})", Endpoint::Completions, "ok"},
      {R"({"prompt": "x", "seed": 18446744073709551615})", Endpoint::Completions, "ok"},
      {R"({"prompt": "x", "response_format": {"type": "text"}, "tools": []})", Endpoint::Completions, "ok"},
      {R"({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 20})", Endpoint::Chat,
       "ok"},
      {R"({"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}]}]})", Endpoint::Chat, "ok"},
      {R"({"messages": [{"role": "assistant", "content": null}]})", Endpoint::Chat, "ok"},
      {"", Endpoint::Completions, ""},
      {"{", Endpoint::Completions, ""},
      {"[]", Endpoint::Completions, ""},
      {R"({"prompt": NaN})", Endpoint::Completions, ""},
      {R"({})", Endpoint::Completions, "prompt"},
      {R"({"prompt": 5})", Endpoint::Completions, "prompt"},
      {R"({"prompt": []})", Endpoint::Completions, "prompt"},
      {R"({"prompt": ["a", "b"]})", Endpoint::Completions, "prompt"},
      {R"({"prompt": [[1], [2]]})", Endpoint::Completions, "prompt"},
      {R"({"prompt": [[]]})", Endpoint::Completions, "prompt"},
      {R"({"prompt": [-1]})", Endpoint::Completions, "prompt"},
      {R"({"prompt": [4294967296]})", Endpoint::Completions, "prompt"},
      {R"({"prompt": [1.5]})", Endpoint::Completions, "prompt"},
      {R"({"prompt": "x", "max_tokens": 0})", Endpoint::Completions, "max_tokens"},
      {R"({"prompt": "x", "max_tokens": -3})", Endpoint::Completions, "max_tokens"},
      {R"({"prompt": "x", "max_tokens": 1.5})", Endpoint::Completions, "max_tokens"},
      {R"({"prompt": "x", "max_tokens": 1e300})", Endpoint::Completions, "max_tokens"},
      {R"({"prompt": "x", "max_tokens": 99999999999999999999})", Endpoint::Completions, "max_tokens"},
      {R"({"prompt": "x", "max_tokens": "5"})", Endpoint::Completions, "max_tokens"},
      {R"({"prompt": "x", "temperature": 2.5})", Endpoint::Completions, "temperature"},
      {R"({"prompt": "x", "temperature": -1e-9})", Endpoint::Completions, "temperature"},
      {R"({"prompt": "x", "temperature": true})", Endpoint::Completions, "temperature"},
      {R"({"prompt": "x", "top_p": 1.01})", Endpoint::Completions, "top_p"},
      {R"({"prompt": "x", "top_k": -1})", Endpoint::Completions, "top_k"},
      {R"({"prompt": "x", "min_p": 2})", Endpoint::Completions, "min_p"},
      {R"({"prompt": "x", "frequency_penalty": -2.01})", Endpoint::Completions, "frequency_penalty"},
      {R"({"prompt": "x", "seed": 1.5})", Endpoint::Completions, "seed"},
      {R"({"prompt": "x", "seed": "1"})", Endpoint::Completions, "seed"},
      {R"({"prompt": "x", "n": 2})", Endpoint::Completions, "n"},
      {R"({"prompt": "x", "n": -1})", Endpoint::Completions, "n"},
      {R"({"prompt": "x", "best_of": 3})", Endpoint::Completions, "best_of"},
      {R"({"prompt": "x", "echo": true})", Endpoint::Completions, "echo"},
      {R"({"prompt": "x", "suffix": "y"})", Endpoint::Completions, "suffix"},
      {R"({"prompt": "x", "logit_bias": {"1": 5}})", Endpoint::Completions, "logit_bias"},
      {R"({"prompt": "x", "response_format": {"type": "json_object"}})", Endpoint::Completions, "response_format"},
      {R"({"prompt": "x", "stop": ""})", Endpoint::Completions, "stop"},
      {R"({"prompt": "x", "stop": [1]})", Endpoint::Completions, "stop"},
      {R"({"prompt": "x", "stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]})",
       Endpoint::Completions, "stop"},
      {R"({"prompt": "x", "stream": 1})", Endpoint::Completions, "stream"},
      {R"({"prompt": "x", "stream_options": []})", Endpoint::Completions, "stream_options"},
      {R"({"prompt": "x", "stream_options": {"include_usage": "yes"}})", Endpoint::Completions, "include_usage"},
      {R"({"prompt": "x", "logprobs": 21})", Endpoint::Completions, "logprobs"},
      {R"({"prompt": "x", "logprobs": true})", Endpoint::Completions, "logprobs"},
      {R"({"messages": []})", Endpoint::Chat, "messages"},
      {R"({"messages": [{"content": "x"}]})", Endpoint::Chat, "messages"},
      {R"({"messages": [{"role": "tool", "content": "x"}]})", Endpoint::Chat, "messages"},
      {R"({"messages": [{"role": "user"}]})", Endpoint::Chat, "messages"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", Endpoint::Chat, "messages"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", Endpoint::Chat, "top_logprobs"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logprobs": 2})", Endpoint::Chat, "logprobs"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})", Endpoint::Chat, "tools"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0})", Endpoint::Chat,
       "max_completion_tokens"},
  };
  for (const auto& c : cases) {
    try {
      parse_completion_request(c.body, c.endpoint);
      EXPECT_EQ(c.param, "ok") << c.body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400) << c.body;
      EXPECT_EQ(e.param(), c.param) << c.body << ": " << e.what();
    }
  }
}

TEST(ServerRequest, ReadsTheFields) {
  CompletionRequest r = parse_completion_request(
      R"({"model": "m", "prompt": "p", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 3,
          "min_p": 0.1, "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 42, "stop": "\n",
          "stream": true, "stream_options": {"include_usage": true}, "logprobs": 2})",
      Endpoint::Completions);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(*r.prompt_text, "p");
  EXPECT_EQ(*r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampler.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampler.top_p, 0.9f);
  EXPECT_EQ(r.sampler.top_k, 3);
  EXPECT_FLOAT_EQ(r.sampler.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.sampler.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampler.frequency_penalty, -0.5f);
  EXPECT_EQ(r.sampler.seed, 42u);
  EXPECT_TRUE(r.seeded);
  EXPECT_EQ(r.stop, std::vector<std::string>{"\n"});
  EXPECT_TRUE(r.stream && r.include_usage && r.logprobs);
  EXPECT_EQ(r.top_logprobs, 2);
  // OpenAI's defaults when nothing is given.
  CompletionRequest d = parse_completion_request(R"({"prompt": "p"})", Endpoint::Completions);
  EXPECT_FALSE(d.max_tokens);
  EXPECT_FLOAT_EQ(d.sampler.temperature, 1.0f);
  EXPECT_FLOAT_EQ(d.sampler.top_p, 1.0f);
  EXPECT_EQ(d.sampler.top_k, 0);
  EXPECT_FALSE(d.seeded);
  // The runtime's "random seed" value stays reproducible.
  CompletionRequest s = parse_completion_request(R"({"prompt": "p", "seed": 4294967295})", Endpoint::Completions);
  EXPECT_NE(s.sampler.seed, 0xFFFFFFFFull);
}

struct StopCase {
  std::vector<std::string> stops;
  std::vector<std::string> pieces;
  std::string out;  // everything emitted
  bool stopped;
};

TEST(ServerStopMatcher, NeverEmitsAStopString) {
  const StopCase cases[] = {
      {{"\n\n"}, {"Hello", "\n", "\n", "World"}, "Hello", true},
      {{"\n\n"}, {"Hello", "\n", "World"}, "Hello\nWorld", false},
      {{"abc"}, {"xa", "b", "c", "d"}, "x", true},
      {{"abc"}, {"xab", "abc"}, "xab", true},
      {{"abab"}, {"aba", "bab"}, "", true},
      {{"aab"}, {"aaa", "ab"}, "aa", true},
      {{"bc", "abcd"}, {"abcd"}, "", true},           // both end in one piece: the earlier start wins
      {{"bc", "abcd"}, {"ab", "cd"}, "", true},       // likewise across pieces
      {{"bc", "abcd"}, {"ab", "c", "d"}, "a", true},  // "bc" ends a piece before "abcd" can
      {{"é!"}, {"caf\xc3\xa9", "!", "x"}, "caf", true},
      {{"END"}, {"the E", "N", "d"}, "the ENd", false},
      {{}, {"a", "b"}, "ab", false},
      {{"x"}, {}, "", false},
  };
  for (const auto& c : cases) {
    StopMatcher m(c.stops);
    std::string out;
    bool stopped = false;
    for (const auto& p : c.pieces) {
      auto r = m.push(p);
      for (const auto& s : c.stops) EXPECT_EQ(r.text.find(s), std::string::npos);
      out += r.text;
      if (r.stopped) {
        stopped = true;
        break;
      }
    }
    if (!stopped) out += m.flush();
    EXPECT_EQ(out, c.out) << c.pieces.size();
    EXPECT_EQ(stopped, c.stopped) << c.out;
  }
}

// The scheduler on the demo model, without HTTP.
class ServerScheduler : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string path = test::repo_path("models/kjv-7m-q8_0.gguf");
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "no demo model";
    model_ = model::Model::load(path);
    runtime::BackendOptions bo;
    bo.n_threads = 2;
    bo.n_seq = 4;
    bo.n_ctx = 128;
    bo.n_batch = 64;
    backend_ = runtime::make_backend(runtime::BackendKind::Cpu, *model_, bo);
    tok_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_gguf(model_->file));
  }

  std::shared_ptr<Task> make_task(const std::string& prompt, int32_t max_tokens) {
    auto t = std::make_shared<Task>();
    t->id = next_id_++;
    t->prompt = tok_->encode(prompt, true, false);
    t->max_tokens = max_tokens;
    t->sampler.temperature = 0;
    return t;
  }

  // Runs the tasks through one scheduler, all queued at once or each after
  // the previous one finished; returns each one's text.
  std::vector<std::string> run(const std::vector<std::shared_ptr<Task>>& tasks, std::vector<TaskEvent>* done = nullptr,
                               bool one_by_one = false) {
    TaskQueue q(64);
    Metrics metrics;
    Scheduler s(*backend_, model_->config, *tok_, q, metrics, {4, 128, 64});
    if (!one_by_one) {
      for (auto& t : tasks) {
        EXPECT_TRUE(q.try_push(t));
      }
    }
    s.start();
    std::vector<std::string> texts;
    for (auto& t : tasks) {
      if (one_by_one) {
        EXPECT_TRUE(q.try_push(t));
      }
      std::string text;
      for (bool finished = false; !finished;) {
        std::vector<TaskEvent> evs;
        t->stream.pop_all(evs, std::chrono::milliseconds(100));
        for (auto& e : evs) {
          if (e.kind == TaskEvent::Kind::Delta) {
            text += e.text;
          } else {
            finished = true;
            if (done) done->push_back(e);
          }
        }
      }
      texts.push_back(text);
    }
    s.stop(Clock::now());
    return texts;
  }

  std::unique_ptr<model::Model> model_;
  std::unique_ptr<runtime::Backend> backend_;
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  uint64_t next_id_ = 1;
};

// What continuous batching relies on: a row's logits do not depend on the
// other rows of its batch, bit for bit. Sequence 0 decodes the same tokens
// alone and in batches of 1..4 decode rows plus prompt chunks of others.
TEST_F(ServerScheduler, BackendRowsAreIndependentBitForBit) {
  const int32_t n_vocab = static_cast<int32_t>(model_->config.n_vocab);
  const std::vector<int32_t> prompt = tok_->encode("And God said unto Moses", true, false);
  const std::vector<int32_t> other = tok_->encode("In the beginning God created the heaven", true, false);
  auto decode = [&](int extra_rows) {
    std::vector<float> out;
    std::vector<float> logits(static_cast<size_t>(64) * n_vocab);
    for (size_t i = 0; i < prompt.size(); ++i) {
      std::vector<runtime::BatchEntry> batch;
      // Other sequences first, so that row 0's position in the batch moves too.
      for (int s = 1; s <= extra_rows; ++s)
        batch.push_back({other[i % other.size()], static_cast<int32_t>(i), s, true});
      if (extra_rows == 2 && i == 0)  // and a prompt chunk without logits
        for (size_t k = 0; k < other.size(); ++k) batch.push_back({other[k], static_cast<int32_t>(k), 3, false});
      batch.push_back({prompt[i], static_cast<int32_t>(i), 0, true});
      int row = 0;
      for (const auto& e : batch) row += e.want_logits;
      backend_->forward(batch, logits.data());
      out.insert(out.end(), logits.begin() + static_cast<size_t>(row - 1) * n_vocab,
                 logits.begin() + static_cast<size_t>(row) * n_vocab);
    }
    return out;
  };
  const std::vector<float> solo = decode(0);
  for (int extra = 1; extra <= 3; ++extra) {
    const std::vector<float> batched = decode(extra);
    ASSERT_EQ(batched.size(), solo.size());
    EXPECT_EQ(std::memcmp(batched.data(), solo.data(), solo.size() * sizeof(float)), 0)
        << "logits of a row changed with " << extra << " other rows in its batch";
  }
}

TEST_F(ServerScheduler, BatchedGreedyEqualsSolo) {
  const std::vector<std::string> prompts = {
      "And God said",    "In the beginning",    "And the LORD spake unto Moses, saying",
      "Blessed are the", "And it came to pass", "Thou shalt not"};
  std::vector<std::string> solo;
  for (const auto& p : prompts) solo.push_back(run({make_task(p, 12)})[0]);
  // Six tasks over four slots: batches mix decoding slots with prompt chunks.
  std::vector<std::shared_ptr<Task>> tasks;
  for (const auto& p : prompts) tasks.push_back(make_task(p, 12));
  std::vector<TaskEvent> done;
  EXPECT_EQ(run(tasks, &done), solo);
  for (const auto& d : done) {
    EXPECT_EQ(d.finish, FinishReason::Length);
    EXPECT_EQ(d.n_generated, 12);
  }
}

TEST_F(ServerScheduler, PrefixReuseChangesNothingButTheWork) {
  const std::string p = "And God said unto Moses, I AM THAT I AM";
  const std::string fresh = run({make_task(p, 8)})[0];
  std::vector<TaskEvent> done;
  // The second and third arrive after the first finished: its slot holds the prompt.
  auto texts = run({make_task(p, 8), make_task(p, 8), make_task(p + " and", 8)}, &done, /*one_by_one=*/true);
  EXPECT_EQ(texts[0], fresh);
  EXPECT_EQ(texts[1], fresh);
  ASSERT_EQ(done.size(), 3u);
  EXPECT_EQ(done[0].n_cached, 0);
  EXPECT_EQ(done[1].n_cached, done[1].n_prompt - 1);  // all but the last token, whose logits start the reply
  EXPECT_GE(done[2].n_cached, done[1].n_prompt);
}

TEST_F(ServerScheduler, CancelledTaskFreesItsSlot) {
  auto t = make_task("And God said", 100);
  TaskQueue q(4);
  Metrics metrics;
  Scheduler s(*backend_, model_->config, *tok_, q, metrics, {4, 128, 64});
  ASSERT_TRUE(q.try_push(t));
  s.start();
  std::vector<TaskEvent> evs;
  while (evs.empty()) t->stream.pop_all(evs, std::chrono::milliseconds(100));
  t->stream.cancel();
  bool finished = false;
  for (int i = 0; i < 50 && !finished; ++i) {
    evs.clear();
    t->stream.pop_all(evs, std::chrono::milliseconds(100));
    for (auto& e : evs)
      if (e.kind == TaskEvent::Kind::Done) {
        finished = true;
        EXPECT_EQ(e.finish, FinishReason::Cancelled);
        EXPECT_LT(e.n_generated, 100);
      }
  }
  EXPECT_TRUE(finished);
  s.stop(Clock::now());
}

}  // namespace
}  // namespace quarrel::server
