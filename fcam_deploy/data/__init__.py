"""fcam_deploy.data"""
