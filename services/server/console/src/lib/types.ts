// The shapes the API answers (docs/http-api.md), as far as the console reads them.

export interface Me {
  username: string;
  role: "admin" | "developer" | "viewer";
  via?: string;
}
export interface SessionInfo {
  createdAt: number;
  lastSeenAt: number;
  address: string | null;
  userAgent: string | null;
  isCurrent: boolean;
}
export interface ScriptSet {
  id: string;
  title?: string | null;
  description?: string | null;
  createTime?: number;
  updateTime?: number;
}
export interface Script {
  id: string;
  scriptSetId?: string;
  title?: string | null;
  description?: string | null;
  code?: string | null;
  codeMD5?: string | null;
  publishedCode?: string | null;
  publishVersion?: number | null;
  publishTime?: number | null;
  updateTime?: number;
}
export interface ParamSpec {
  required?: boolean;
  default?: string | null;
}
export interface Func {
  id: string;
  scriptId: string;
  scriptSetId: string;
  name: string;
  title?: string | null;
  description?: string | null;
  definition: string;
  args: string[];
  kwargsSpec: Record<string, ParamSpec>;
  varKwargs: boolean;
  category?: string | null;
  tags?: string[];
}
export interface Entry {
  id: string;
  funcId: string;
  kwargs?: Record<string, unknown>;
  apiAuth?: Record<string, unknown> | null;
  apiAuthId?: string | null;
  throttling?: Record<string, unknown> | null;
  expireTime?: number | null;
  isDisabled?: boolean | null;
  taskRecordLimit?: number | null;
  tags?: string[] | null;
  note?: string | null;
  cronExpr?: string;
  timezone?: string | null;
  misfirePolicy?: string | null;
  overlapPolicy?: string | null;
  definedInCode?: boolean;
}
export interface Task {
  id: string;
  funcId?: string | null;
  origin?: string | null;
  originId?: string | null;
  status?: string | null;
  queue?: string | null;
  attempt?: number | null;
  triggerTime?: number | null;
  startTime?: number | null;
  endTime?: number | null;
  result?: unknown;
  exception?: string | null;
  traceback?: string | null;
  printLogs?: string | string[] | null;
  kwargs?: Record<string, unknown> | null;
  kwargsTruncated?: boolean;
  [key: string]: unknown;
}
export interface EnvVariable {
  id: string;
  title?: string | null;
  description?: string | null;
  valueType: string;
  value?: unknown;
}
