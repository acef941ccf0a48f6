// The Microsoft clouds, apart from settings.ts so that `juniper settings`'s --cloud choices load without it.
/** Login host of each Microsoft cloud; US Gov covers GCC High and DoD. */
export const cloudHosts = {
  global: 'login.microsoftonline.com',
  usgov: 'login.microsoftonline.us',
  china: 'login.chinacloudapi.cn',
} as const;
export type Cloud = keyof typeof cloudHosts;
export const clouds = Object.keys(cloudHosts) as [Cloud, ...Cloud[]];
