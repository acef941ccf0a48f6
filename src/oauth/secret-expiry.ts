// The Azure client secret expires on a date the admin chose; when it does, every Outlook server stops at
// once. Warnings start 30 days ahead and grow louder at 14, 7 and 1 days.
export const WARNING_DAYS = [30, 14, 7, 1] as const;

export interface SecretExpiryWarning {
  level: 'notice' | 'warning' | 'critical';
  message: string;
}

export function secretExpiryWarning(daysLeft: number | null): SecretExpiryWarning | null {
  if (daysLeft === null || daysLeft > WARNING_DAYS[0]) return null;
  const renew = 'Create a new client secret in Azure (App registrations → Juniper → Certificates & secrets) and paste its Value in Settings → Outlook Credentials.';
  if (daysLeft < 0) return { level: 'critical', message: `The Outlook client secret expired ${-daysLeft} day(s) ago: Outlook servers cannot get tokens. ${renew}` };
  if (daysLeft === 0) return { level: 'critical', message: `The Outlook client secret expires today. ${renew}` };
  const level = daysLeft <= 7 ? 'critical' : daysLeft <= 14 ? 'warning' : 'notice';
  return { level, message: `The Outlook client secret expires in ${daysLeft} day(s). ${renew}` };
}

/** Whether today is one of the days a warning is logged (30, 14, 7, 1 days ahead, and every day after expiry). */
export function isWarningDay(daysLeft: number | null): boolean {
  return daysLeft !== null && (daysLeft <= 0 || (WARNING_DAYS as readonly number[]).includes(daysLeft));
}
