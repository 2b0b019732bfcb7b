/**
 * A benchmark task file (`tasks/<name>.yaml`): where its rows come from on the Hub, how a row becomes a prompt,
 * its choices and target, and what is measured. The fields follow lm-evaluation-harness's task YAML
 * (doc_to_text / doc_to_choice / doc_to_target, target_delimiter, fewshot_delimiter, description, num_fewshot).
 */
import { z } from "zod";

const template = z.string().describe("a template over the row's columns: {{Question.strip()}}, {{choices.text}}, …");

export const taskSchema = z
  .strictObject({
    task: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/, "a lower-case name: letters, digits, _ . -"),
    /** What the prompts follow, e.g. "lm-evaluation-harness v0.4.9 lm_eval/tasks/arc/arc_easy.yaml". */
    follows: z.string().min(1),
    dataset: z.strictObject({
      repo: z.string().regex(/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/, "a Hub dataset id, org/name"),
      revision: z.string().min(1).default("main"),
      /** The card's `configs:` entry whose data_files give each split (a template over {{subset}}). */
      config: z.string().optional(),
      /** Globs per split, instead of the card's configs (templates over {{subset}}). */
      data_files: z.record(z.string(), z.string()).optional(),
      split: z.string().min(1),
      fewshot_split: z.string().optional(),
    }),
    /**
     * One run of the task per subset (CMMLU's and C-Eval's subjects), each a config of the dataset: name → a label
     * the description may use as {{subset_label}}. Subsets the dataset does not hold are reported, not hidden.
     */
    subsets: z.record(z.string(), z.string()).optional(),
    /** How subsets combine into the task's own score: weighted by their number of rows (the harness's weight_by_size), or a plain mean. */
    aggregate: z.enum(["weighted", "mean"]).default("weighted"),
    output_type: z.enum(["multiple_choice", "generate_until"]).default("multiple_choice"),
    /** New columns computed in order before anything else (the harness's process_docs), each a template. */
    derive: z.record(z.string(), template).optional(),
    description: template.default(""),
    doc_to_text: template,
    doc_to_choice: z.union([template, z.array(z.string()).min(1)]).optional(),
    doc_to_target: z.union([template, z.number().int().min(0)]),
    /** The choices are contexts and the target the shared continuation (Winogrande's partial scoring). */
    multiple_input: z.boolean().default(false),
    target_delimiter: z.string().default(" "),
    fewshot_delimiter: z.string().default("\n\n"),
    num_fewshot: z.number().int().min(0).default(0),
    /** Only `first_n` (the harness's sampler for CMMLU and C-Eval): the first rows of the few-shot split. */
    fewshot_sampler: z.enum(["first_n"]).default("first_n"),
    metrics: z.array(z.enum(["acc", "acc_norm", "pass@1"])).min(1),
    generation: z
      .strictObject({
        until: z.array(z.string()).default([]),
        max_gen_toks: z.number().int().min(1).default(256),
      })
      .optional(),
    /** generate_until with pass@1: the program run for a completion ({{completion}} is the model's text). */
    execution: z
      .strictObject({
        program: template,
        timeout_s: z.number().positive().default(3),
      })
      .optional(),
  })
  .superRefine((t, ctx) => {
    if (!t.dataset.config && !t.dataset.data_files) ctx.addIssue({ code: "custom", path: ["dataset"], message: "give config (a configs: entry of the dataset card) or data_files" });
    if (t.output_type === "multiple_choice") {
      if (!t.doc_to_choice) ctx.addIssue({ code: "custom", path: ["doc_to_choice"], message: "a multiple_choice task needs doc_to_choice" });
      for (const m of t.metrics) if (m === "pass@1") ctx.addIssue({ code: "custom", path: ["metrics"], message: "pass@1 is for generate_until tasks" });
    } else {
      if (!t.generation) ctx.addIssue({ code: "custom", path: ["generation"], message: "a generate_until task needs generation: {until, max_gen_toks}" });
      for (const m of t.metrics) {
        if (m !== "pass@1") ctx.addIssue({ code: "custom", path: ["metrics"], message: `${m} is for multiple_choice tasks` });
        else if (!t.execution) ctx.addIssue({ code: "custom", path: ["execution"], message: "pass@1 needs execution: {program, timeout_s}" });
      }
    }
    if (t.num_fewshot > 0 && !t.dataset.fewshot_split) ctx.addIssue({ code: "custom", path: ["dataset", "fewshot_split"], message: "num_fewshot > 0 needs a fewshot_split" });
  });

export type TaskSpec = z.output<typeof taskSchema>;
