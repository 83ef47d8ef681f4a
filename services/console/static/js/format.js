// Labels and thresholds shared by the pages.
export const KIND = { province: '省', city: '市', county: '县（区）', street: '街道（乡镇）', community: '社区（村）', grid: '网格', unit: '单位' };
export const ROLE = { viewer: '查看', operator: '经办', unit: '承办单位', inspector: '巡察', admin: '管理员', integrator: '数据对接' };
export const ISSUE_STATUS = { reported: '已受理', assigned: '已派单', accepted: '已签收', resolved: '已办结', closed: '已销号' };
export const SOURCE = { grid: '网格上报', hotline: '12345热线', survey: '走访', inspection: '巡察', resident: '群众反映' };
export const SATISFACTION = { satisfied: '满意', basically_satisfied: '基本满意', dissatisfied: '不满意' };
export const FINDING_STATUS = { assigned: '已交办', in_progress: '整改中', completed: '已完成待验收', verified: '已销号' };
export const WARNING = { none: '无', green: '绿灯', yellow: '黄灯', red: '红灯' };
export const PAIRING_STATUS = { active: '履行中', terminated: '已终止' };
export const SERVICE_STATUS = { requested: '待派单', dispatched: '已派单', accepted: '已接单', completed: '已完成', evaluated: '已评单', cancelled: '已取消' };
export const SURVEY_FLAG = { group_rental: '群租房', safety_hazard: '安全隐患', needs_help: '需要帮扶', vacant: '空置', other: '其他' };
export const MEMBER_STATUS = { active: '在册', deregistered: '已注销', erased: '已删除个人信息' };

/** A rate's traffic light: ≥ 90 % green, ≥ 75 % yellow, below red; no data grey. */
export function rateLevel(rate) {
  if (rate === null || rate === undefined) return 'none';
  if (rate >= 0.9) return 'green';
  if (rate >= 0.75) return 'yellow';
  return 'red';
}

/** An overdue count's light: none overdue green, any red. */
export function countLevel(n) {
  return n > 0 ? 'red' : 'green';
}

export function pct(rate) {
  return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(1)}%`;
}

export function num(n) {
  if (n === null || n === undefined) return '—';
  return Number(n).toLocaleString('zh-CN', { maximumFractionDigits: 1 });
}

const TZ = 'Asia/Shanghai';
export function dateTime(s) {
  if (!s) return '—';
  return new Date(s).toLocaleString('zh-CN', { timeZone: TZ, hour12: false, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
}

/** Today in China (YYYY-MM-DD), the API's business day. */
export function chinaToday(offsetDays = 0) {
  const d = new Date(Date.now() + offsetDays * 86400000);
  return new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit' }).format(d);
}

/** A <input type=datetime-local> value read as China time, as RFC 3339. */
export function chinaInstant(local) {
  return `${local.length === 16 ? local + ':00' : local}+08:00`;
}

/** A datetime-local value N days ahead at 18:00 China time. */
export function chinaLocalInDays(days) {
  return `${chinaToday(days)}T18:00`;
}

export const EVENT = {
  IssueReported: '受理登记', IssueAssigned: '派单', IssueReturned: '退单', IssueAccepted: '签收',
  IssueExtended: '延期', IssueProgressNoted: '办理进展', IssueEscalated: '吹哨', IssueEscalationAnswered: '报到响应',
  IssueResolved: '办结', IssueEvaluated: '回访', IssueClosed: '销号', IssueReopened: '重办',
  IssueOverdue: '超期', EscalationOverdue: '吹哨响应超时',
  FindingRecorded: '问题建账', RectificationAssigned: '交办整改', RectificationProgressReported: '整改进展',
  RectificationCompleted: '整改完成', RectificationVerified: '验收销号', RectificationRejected: '验收退回',
  RectificationOverdue: '整改超期', FindingReopened: '回头看重新整改',
  PairingSigned: '签订结对协议', CommitmentFulfilled: '兑现承诺', PairingActivityHeld: '开展共建活动',
  PairingReviewed: '结对评议', PairingTerminated: '终止结对',
  UnitRegistered: '单位报到', MemberRegistered: '党员报到', ServiceRecorded: '记录服务', PointsAwarded: '积分奖励',
  PointsDeducted: '积分扣减', MemberTransferred: '党员转移', MemberDeregistered: '注销报到', MemberErased: '删除个人信息',
  NodeRegistered: '设立节点', NodeRenamed: '更名', NodeMoved: '调整隶属', NodeClosed: '撤销节点',
};
