"""fcam_deploy.cams"""
