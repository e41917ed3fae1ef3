// The CodeMirror 6 editor of a script: Python, completion, Ctrl-S (save), Ctrl-Enter (run the
// draft), read-only when locked, and the line of a compile error marked.

import { python, pythonLanguage } from "@codemirror/lang-python";
import { indentUnit } from "@codemirror/language";
import { Compartment, EditorState, StateEffect, StateField } from "@codemirror/state";
import { Decoration, type DecorationSet, EditorView, keymap } from "@codemirror/view";
import { basicSetup } from "codemirror";
import { makeSource, type ScriptIndex } from "./completion";

/** The nonce the Server put in index.html: CodeMirror's <style> element carries it, which the
 * Content-Security-Policy (no inline styles otherwise) then allows. */
export const cspNonce = EditorView.cspNonce.of(
  document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content ?? "",
);

export interface EditorHooks {
  onChange: (code: string) => void;
  onSave: () => void;
  onRun: () => void;
  index: () => ScriptIndex;
}

/** Where the draft does not compile (the `detail` of a 400 EScriptInvalid). */
export interface CodeProblem {
  line: number;
  col?: number | null;
  message: string;
}

export interface ScriptEditor {
  view: EditorView;
  setReadOnly: (readOnly: boolean) => void;
  setCode: (code: string) => void;
  /** Mark the line of `problem` (and scroll to it); null clears the mark. */
  markProblem: (problem: CodeProblem | null) => void;
  destroy: () => void;
}

const setProblem = StateEffect.define<CodeProblem | null>();

/** The marked line: a line decoration that follows edits until the next check clears it. */
const problemField = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(marks, tr) {
    marks = marks.map(tr.changes);
    for (const effect of tr.effects) {
      if (!effect.is(setProblem)) continue;
      const p = effect.value;
      if (!p) {
        marks = Decoration.none;
        continue;
      }
      const line = tr.state.doc.line(Math.min(Math.max(1, p.line), tr.state.doc.lines));
      const deco = Decoration.line({ class: "cm-problem-line", attributes: { title: p.message, "data-problem": p.message } });
      marks = Decoration.set([deco.range(line.from)]);
    }
    return marks;
  },
  provide: (field) => EditorView.decorations.from(field),
});

export function createEditor(parent: HTMLElement, code: string, readOnly: boolean, hooks: EditorHooks): ScriptEditor {
  const editable = new Compartment();
  const ro = (v: boolean) => [EditorState.readOnly.of(v), EditorView.editable.of(!v)];
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: code,
      extensions: [
        cspNonce,
        keymap.of([
          { key: "Mod-s", preventDefault: true, run: () => (hooks.onSave(), true) },
          { key: "Mod-Enter", preventDefault: true, run: () => (hooks.onRun(), true) },
        ]),
        problemField,
        basicSetup,
        python(),
        indentUnit.of("    "), // PEP 8
        pythonLanguage.data.of({ autocomplete: makeSource(hooks.index) }),
        editable.of(ro(readOnly)),
        EditorView.contentAttributes.of({ "aria-label": "Script code" }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) hooks.onChange(u.state.doc.toString());
        }),
      ],
    }),
  });
  return {
    view,
    setReadOnly: (v) => view.dispatch({ effects: editable.reconfigure(ro(v)) }),
    setCode: (c) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: c } }),
    markProblem: (p) => {
      const effects: StateEffect<unknown>[] = [setProblem.of(p)];
      if (p) {
        const line = view.state.doc.line(Math.min(Math.max(1, p.line), view.state.doc.lines));
        effects.push(EditorView.scrollIntoView(line.from, { y: "center" }));
      }
      view.dispatch({ effects });
    },
    destroy: () => view.destroy(),
  };
}
